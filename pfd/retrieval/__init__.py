"""Retrieval: ranking a gallery, re-ranking, Market-1501-protocol metrics, a saved FAISS index, plots.

    from pfd.retrieval import evaluate_features, retrieval_options, summarize
    metrics, distmat = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, **retrieval_options(cfg))
    print(summarize(metrics))  # {"mAP", "mINP", "Rank-1", "Rank-5", "Rank-10", "Rank-20"}

Distances are squared Euclidean (2 - 2 cos on L2-normalized features); smaller is closer.
Modules: metrics (evaluate), index (distance_matrix, rank_gallery), gallery_index (index kinds,
streaming build, adds and removals), index_folder (save_index/load_index: the saved folder),
stores (what the FAISS folder and a Milvus collection share: locations, SearchFilter, Hit),
milvus_store (a gallery in Milvus; import it explicitly, it loads pymilvus),
rerank (re_ranking), plots (plot_cmc, plot_ranked_lists; import it explicitly, it loads matplotlib).
"""
from .gallery_index import INDEX_KINDS, GalleryIndex, IndexBuilder, build_index
from .index import distance_matrix, rank_gallery
from .index_folder import IndexLoadError, load_index, save_index
from .metrics import evaluate, evaluate_features, retrieval_options, summarize
from .rerank import re_ranking
from .stores import SearchFilter

__all__ = ["INDEX_KINDS", "GalleryIndex", "IndexBuilder", "IndexLoadError", "build_index", "save_index",
           "load_index", "distance_matrix", "rank_gallery", "evaluate", "evaluate_features",
           "retrieval_options", "summarize", "re_ranking", "SearchFilter"]
