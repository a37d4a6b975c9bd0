"""Disentanglement metrics with disentanglement_lib semantics and default sample sizes.

BetaVAE and FactorVAE scores intervene on factors, so they take a `GroundTruthSource` and a
`RepresentationFn`; MIG (20-bin histogram estimator), DCI, SAP, modularity and explicitness score
(representation, factors) arrays. `evaluate_all` / `evaluate_arrays` run a set of them and return
flat float dicts. Bad inputs raise `MetricInputError` (a ValueError).
"""
from metrics.disentanglement.beta_vae import (
    beta_vae_classifier,
    beta_vae_factor_pairs,
    beta_vae_features,
    beta_vae_score,
)
from metrics.disentanglement.dci import (IMPORTANCE_MODELS, code_disentanglement, dci, dci_from_importance,
                                      factor_importance)
from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.evaluate import (
    ALL_METRICS,
    ARRAY_METRICS,
    DLIB_SIZES,
    MetricSizes,
    evaluate_all,
    evaluate_arrays,
)
from metrics.disentanglement.factor_vae import (
    active_dims,
    factor_vae_accuracy,
    factor_vae_batch_factors,
    factor_vae_score,
    factor_vae_votes,
    global_variances,
)
from metrics.disentanglement.mig import (
    discrete_entropy,
    histogram_discretize,
    mig,
    mig_from_mutual_info,
    mutual_info_matrix,
)
from metrics.disentanglement.modularity import (
    explicitness,
    modularity,
    modularity_explicitness,
    modularity_from_mutual_info,
)
from metrics.disentanglement.sap import sap, sap_from_scores, sap_score_matrix
from metrics.disentanglement.source import (
    GroundTruthSource,
    RepresentationFn,
    represent_factors,
    sample_representations,
)

__all__ = [
    "ALL_METRICS",
    "ARRAY_METRICS",
    "DLIB_SIZES",
    "GroundTruthSource",
    "IMPORTANCE_MODELS",
    "MetricInputError",
    "MetricSizes",
    "RepresentationFn",
    "active_dims",
    "beta_vae_classifier",
    "beta_vae_factor_pairs",
    "beta_vae_features",
    "beta_vae_score",
    "dci",
    "dci_from_importance",
    "code_disentanglement",
    "discrete_entropy",
    "evaluate_all",
    "evaluate_arrays",
    "explicitness",
    "factor_importance",
    "factor_vae_accuracy",
    "factor_vae_batch_factors",
    "factor_vae_score",
    "factor_vae_votes",
    "global_variances",
    "histogram_discretize",
    "mig",
    "mig_from_mutual_info",
    "modularity",
    "modularity_explicitness",
    "modularity_from_mutual_info",
    "mutual_info_matrix",
    "represent_factors",
    "sample_representations",
    "sap",
    "sap_from_scores",
    "sap_score_matrix",
]
