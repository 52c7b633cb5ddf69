"""Inference: what feature an image gets from a checkpoint, and what keypoints a query photo gets.

Modules: `checkpoint` (a checkpoint, ours or a reference one, as an eval-mode model), `features` (the one
eval forward loop, with the test-time flip), `query_pose` (the one policy for a query photo's keypoints,
shared by `query.py search`, pfd.api and the service). Above pfd.data and pfd.model, below pfd.engine:
the Python API and the service run on it without the training engine.
"""
