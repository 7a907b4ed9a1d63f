"""A study small enough for a test: every part, a few models, a few epochs (shared by the study tests)."""

TINY_ZOO = {
    "name": "tiny",
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1200},
    "models": {"mlp": {"width": [16, 64]}, "cnn1d": {"channels": [4]}},
    "train": {"lr": [0.05, 0.2], "weight_decay": [0.0, 0.0005], "batch_size": 64, "n_train": 400, "epochs": 3,
              "probe_size": 64},  # the data is the same for every run: a search never compares data sizes
    "seeds": [0],
}
TINY_ARCH = {
    "name": "tiny-arch",
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1200},
    "models": {"mlp": {"depth": [1, 2], "width": [16, 64]}, "cnn1d": {"depth": [2, 3], "channels": [4]}},
    "train": {"lr": 0.05, "batch_size": 64, "n_train": 400, "epochs": 3, "probe_size": 64},
    "seeds": [0],
}
MEASURES = ["gn_full", "gn_fc", "traj_gn", "val_loss", "snip", "synflow", "param_norm", "ww_alpha", "db_mixup",
            "pacbayes_flatness"]
TINY = {
    "name": "tiny",
    "description": "a test-sized study",
    "device": "cpu",
    "correlation": {"zoo": TINY_ZOO, "bootstrap": 30, "measures": MEASURES},
    "cost": {
        "cases": [{"label": "mlp w16", "model": "mlp", "model_kwargs": {"width": 16}},
                  {"label": "cnn1d c4", "model": "cnn1d", "model_kwargs": {"channels": 4}}],
        "dataset_kwargs": {"num_samples": 1200}, "n_examples": 256, "batch_size": 64, "repeats": 2,
        "naive_examples": 16,
    },
    "hpo": {
        "zoo": TINY_ZOO,
        "replay": {"algorithms": ["random", "hyperband"], "objectives": ["val_loss", "gn_full", "val_loss+0.1*gn_fc"],
                   "seeds": 4},
        "live": {
            "algorithms": ["random", "asha"], "objectives": ["val_loss", "gn_full"], "trials": 2, "epochs": 2,
            "space": {"name": "tiny-live", "dataset": "mnist1d", "dataset_kwargs": {"num_samples": 1200},
                      "fixed": {"n_train": 300, "probe_size": 64},
                      "space": {"lr": {"loguniform": [0.01, 0.2]}, "model": {"choice": ["mlp", "cnn1d"]},
                                "model_kwargs.width": {"choice": [16, 32]}}},
        },
    },
    "architectures": {"zoo": TINY_ARCH, "bootstrap": 30, "measures": MEASURES},
}
