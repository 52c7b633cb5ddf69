"""Training, evaluation and retrieval drivers behind train.py, test.py and query.py.

    trainer.train(cfg)             # PK batches, SGD/cosine (solver), AMP (precision), DDP (distributed),
                                   # atomic checkpoints + exact resume (checkpoint), log + JSON lines (logger)
    tester.run_test(cfg)           # TEST.WEIGHT on every test set: metrics.json, cmc.png, ranked_lists.png
    search.build_gallery_index(...) / search.search_image(...)   # query.py index / search
    evaluator.extract_features(...) / evaluate_test_sets(...)    # shared by all three
"""
