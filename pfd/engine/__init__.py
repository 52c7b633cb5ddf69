"""Training and evaluation drivers behind train.py and test.py (checkpoint reading and the eval forward loop,
which the Python API shares, are pfd.inference's).

    trainer.train(cfg)             # PK batches, SGD/cosine (solver), AMP (precision), DDP (pfd.distributed),
                                   # atomic checkpoints + exact resume (checkpoint), log + JSON lines (logger)
    tester.run_test(cfg)           # TEST.WEIGHT on every test set: metrics.json, cmc.png, ranked_lists.png
    evaluator.extract_features(...) / evaluate_test_sets(...)   # features of a test set on every rank, metrics
"""
