"""Training and evaluation drivers behind train.py and test.py, and the model loading and feature
extraction that the Python API (pfd.api, behind query.py) is written with.

    trainer.train(cfg)             # PK batches, SGD/cosine (solver), AMP (precision), DDP (distributed),
                                   # atomic checkpoints + exact resume (checkpoint), log + JSON lines (logger)
    tester.run_test(cfg)           # TEST.WEIGHT on every test set: metrics.json, cmc.png, ranked_lists.png
    tester.load_eval_model(...)    # a checkpoint (ours or a reference one) as an eval-mode model
    evaluator.extract_features(...) / loader_features(...) / evaluate_test_sets(...)   # one forward loop
"""
