"""Autologging: every outermost ``fit`` of scikit-learn, XGBoost and LightGBM becomes a run.

    import mloop
    mloop.autolog()
    model = LogisticRegression().fit(X_train, y_train)   # a run: params, metrics, model, data
    model.score(X_test, y_test)                         # val_ metrics in the same run
    mloop.autolog(disable=True)

The package is named ``autologging`` because ``mloop.autolog`` is the function: a package
of that name would replace the function on the ``mloop`` module as soon as it was imported.
See docs/guide/autolog.md for what is logged and how it is named.
"""

from __future__ import annotations

import threading

from mloop.autologging.arrays import ArrayInputModel
from mloop.autologging.patching import Patches, wrap

__all__ = ["ArrayInputModel", "autolog", "is_enabled"]

_lock = threading.Lock()
_patches: Patches | None = None


def autolog(
    *,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    silent: bool = False,
) -> None:
    """Log every outermost ``fit`` of a scikit-learn estimator, and of XGBoost's and
    LightGBM's scikit-learn classes when those libraries are installed, to a run.

    With no run active, each fit starts one (named after the estimator) and ends it; with a
    run active, it logs into that run. ``log_models=False`` leaves out the model package,
    ``log_datasets=False`` the training and validation data's inputs; ``silent=True`` turns
    autologging's own warnings (and warnings raised while it works) to debug messages.
    ``disable=True`` puts every original method back. Calling ``autolog`` again changes the
    options. Autologging never changes what ``fit`` or ``score`` returns or raises.
    """
    from mloop.autologging import boosting, session
    from mloop.autologging import sklearn as sk

    global _patches
    with _lock:
        if disable:
            session.config = None
            if _patches is not None:
                _patches.restore()
            _patches = None
            return
        session.config = session.Config(
            log_models=log_models, log_datasets=log_datasets, silent=silent
        )
        if _patches is None:
            _patches = Patches()
        for cls in [*sk.estimator_classes(), *boosting.estimator_classes()]:
            _patches.patch(cls, "fit", lambda m: wrap(m, session.on_fit, session.enabled))
            _patches.patch(cls, "score", lambda m: wrap(m, session.on_score, session.enabled))


def is_enabled() -> bool:
    """Whether autologging is on."""
    from mloop.autologging import session

    return session.enabled()
