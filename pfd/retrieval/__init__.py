"""Retrieval: ranking a gallery, re-ranking, Market-1501-protocol metrics, a saved FAISS index, plots.

    from pfd.retrieval import evaluate_features, retrieval_options, summarize
    metrics, distmat = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, **retrieval_options(cfg))
    print(summarize(metrics))  # {"mAP", "mINP", "Rank-1", "Rank-5", "Rank-10", "Rank-20"}

Distances are squared Euclidean (2 - 2 cos on L2-normalized features); smaller is closer.
Modules: metrics (evaluate), index (distance_matrix, rank_gallery, build_index/load_index),
rerank (re_ranking), plots (plot_cmc, plot_ranked_lists; import it explicitly, it loads matplotlib).
"""
from .index import GalleryIndex, IndexLoadError, build_index, distance_matrix, load_index, rank_gallery
from .metrics import evaluate, evaluate_features, retrieval_options, summarize
from .rerank import re_ranking

__all__ = ["GalleryIndex", "IndexLoadError", "build_index", "distance_matrix", "load_index", "rank_gallery",
           "evaluate", "evaluate_features", "retrieval_options", "summarize", "re_ranking"]
