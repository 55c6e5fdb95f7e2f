//! The algorithm of a run with its validated parameters: checked before any data is read,
//! checked again against the loaded data, then fitted.

use crate::algorithms::agglomerative::{self, AgglomerativeParams};
use crate::algorithms::dbscan::{self, DbscanParams};
use crate::algorithms::gaussian_mixture::{self, GaussianMixtureParams};
use crate::algorithms::hdbscan::{self, HdbscanParams};
use crate::algorithms::kmeans::{self, KMeansParams};
use crate::algorithms::mean_shift::{self, MeanShiftParams};
use crate::algorithms::optics::{self, OpticsParams};
use crate::algorithms::spectral::{self, SpectralParams};
use crate::model::{Algorithm, ApiError, ApiResult, ExecuteRequest, Matrix, RunContext};

use super::result::Labelled;

const PARAMS_FIELD: &str = "config.algorithm_params";

#[derive(Clone)]
pub(super) enum Plan {
    KMeans(KMeansParams),
    Dbscan(DbscanParams),
    Hdbscan(HdbscanParams),
    Optics(OpticsParams),
    Agglomerative(AgglomerativeParams),
    Spectral(SpectralParams),
    GaussianMixture(GaussianMixtureParams),
    MeanShift(MeanShiftParams),
    /// Groups by attribute values (`attribute_config`); no vector fit.
    AttributeBased,
}

/// A fitted run: the labels with their centres, and the parameters as they were used
/// (defaults and data-dependent choices, such as mean-shift's estimated bandwidth,
/// resolved) for the run record.
pub(super) struct Fitted {
    pub labelled: Labelled,
    pub resolved_params: serde_json::Value,
}

impl Plan {
    pub fn from_request(req: &ExecuteRequest) -> ApiResult<Self> {
        let params = &req.algorithm_params;
        let plan = match req.algorithm {
            Algorithm::KMeans => KMeansParams::from_params(params).map(Plan::KMeans),
            Algorithm::Dbscan => DbscanParams::from_params(params).map(Plan::Dbscan),
            Algorithm::Hdbscan => HdbscanParams::from_params(params).map(Plan::Hdbscan),
            Algorithm::Optics => OpticsParams::from_params(params).map(Plan::Optics),
            Algorithm::Agglomerative => {
                AgglomerativeParams::from_params(params).map(Plan::Agglomerative)
            }
            Algorithm::Spectral => SpectralParams::from_params(params).map(Plan::Spectral),
            Algorithm::GaussianMixture => {
                GaussianMixtureParams::from_params(params).map(Plan::GaussianMixture)
            }
            Algorithm::MeanShift => MeanShiftParams::from_params(params).map(Plan::MeanShift),
            Algorithm::AttributeBased => match params.reader().finish("attribute_based") {
                Ok(()) => Ok(Plan::AttributeBased),
                Err(e) => Err(ApiError::invalid_request(
                    e.field.as_deref().unwrap_or_default(),
                    "attribute_based takes no algorithm_params: its settings are in \
                     config.attribute_config",
                )),
            },
        };
        plan.map_err(|e| e.under(PARAMS_FIELD))
    }

    /// Errors that depend on the number of documents, found once the data is loaded: the
    /// algorithm's own (n_clusters > N...), then the size bound of the algorithms that
    /// keep an N×N structure, which names `sample_size` since that is the cure.
    pub fn check_against_data(&self, n: usize) -> ApiResult<()> {
        match self {
            Plan::KMeans(p) => p.check_against_data(n),
            Plan::Dbscan(p) => p.check_against_data(n),
            Plan::Hdbscan(p) => p.check_against_data(n),
            Plan::Optics(p) => p.check_against_data(n),
            Plan::Agglomerative(p) => p.check_against_data(n),
            Plan::Spectral(p) => p.check_against_data(n),
            Plan::GaussianMixture(p) => p.check_against_data(n),
            Plan::MeanShift(p) => p.check_against_data(n),
            Plan::AttributeBased => Ok(()),
        }
        .map_err(|e| e.under(PARAMS_FIELD))?;
        match self.max_documents() {
            Some((bound, why)) if n > bound => Err(ApiError::invalid_parameter(
                "sample_size",
                format!(
                    "{n} documents were loaded, but {why}, so it clusters at most {bound}; \
                     set sample_size to {bound} or fewer"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The most documents these parameters may cluster, and why; None when unbounded.
    fn max_documents(&self) -> Option<(usize, String)> {
        match self {
            Plan::Agglomerative(p) => p.max_documents(),
            Plan::Spectral(p) => p.max_documents(),
            Plan::MeanShift(p) => p.max_documents(),
            Plan::KMeans(_)
            | Plan::Dbscan(_)
            | Plan::Hdbscan(_)
            | Plan::Optics(_)
            | Plan::GaussianMixture(_)
            | Plan::AttributeBased => None,
        }
    }

    /// The seed of the run: the algorithm's `random_state` where it has one. Deterministic
    /// algorithms still use it for `sample_size` and sampled metrics.
    pub fn seed(&self) -> u64 {
        match self {
            Plan::KMeans(p) => p.random_state.unwrap_or(0),
            Plan::Spectral(p) => p.random_state.unwrap_or(0),
            Plan::GaussianMixture(p) => p.random_state.unwrap_or(0),
            Plan::Dbscan(_)
            | Plan::Hdbscan(_)
            | Plan::Optics(_)
            | Plan::Agglomerative(_)
            | Plan::MeanShift(_)
            | Plan::AttributeBased => 0,
        }
    }

    fn resolved_params(&self) -> serde_json::Value {
        match self {
            Plan::KMeans(p) => p.resolved(),
            Plan::Dbscan(p) => p.resolved(),
            Plan::Hdbscan(p) => p.resolved(),
            Plan::Optics(p) => p.resolved(),
            Plan::Agglomerative(p) => p.resolved(),
            Plan::Spectral(p) => p.resolved(),
            Plan::GaussianMixture(p) => p.resolved(),
            Plan::MeanShift(p) => p.resolved(),
            Plan::AttributeBased => serde_json::json!({}),
        }
    }

    /// Run the algorithm on the (normalised, when asked) vectors. Centroid algorithms
    /// (k-means, Gaussian mixture, mean-shift) report their own centres; the others the
    /// mean of each cluster's members.
    pub fn fit(&self, x: &Matrix, ctx: &RunContext) -> ApiResult<Fitted> {
        let mut resolved_params = self.resolved_params();
        let found = match self {
            Plan::KMeans(p) => {
                let fit = kmeans::fit(x, p, ctx)?;
                let labelled = Labelled {
                    labels: fit.labels.iter().map(|&l| i64::from(l)).collect(),
                    centers: fit.centers,
                    distances: fit.distances,
                    probabilities: None,
                };
                return Ok(Fitted {
                    labelled,
                    resolved_params,
                });
            }
            Plan::GaussianMixture(p) => {
                let fit = gaussian_mixture::fit(x, p, ctx)
                    .map_err(|e| ApiError::from(e).under(PARAMS_FIELD))?;
                let labelled = Labelled::with_centers(x, fit.labels, fit.means)
                    .with_probabilities(fit.probabilities);
                return Ok(Fitted {
                    labelled,
                    resolved_params,
                });
            }
            Plan::MeanShift(p) => {
                let fit = mean_shift::fit(x, p, ctx)
                    .map_err(|e| ApiError::from(e).under(PARAMS_FIELD))?;
                // The bandwidth used, estimated or given: sending it back reproduces the run.
                resolved_params["bandwidth"] = serde_json::json!(fit.bandwidth);
                return Ok(Fitted {
                    labelled: Labelled::with_centers(x, fit.labels, fit.centers),
                    resolved_params,
                });
            }
            Plan::Dbscan(p) => dbscan::fit(x, p, ctx)?,
            Plan::Hdbscan(p) => hdbscan::fit(x, p, ctx)?,
            Plan::Optics(p) => optics::fit(x, p, ctx)?,
            Plan::Agglomerative(p) => agglomerative::fit(x, p, ctx)?,
            Plan::Spectral(p) => spectral::fit(x, p, ctx)?,
            Plan::AttributeBased => {
                return Err(ApiError::internal(
                    "attribute_based groups attributes; it has no vector fit",
                ));
            }
        };
        Ok(Fitted {
            labelled: Labelled::from_labels(x, found.labels, found.n_clusters),
            resolved_params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(algorithm: Algorithm, params: serde_json::Value) -> ExecuteRequest {
        ExecuteRequest {
            collection_ids: vec!["c".into()],
            algorithm,
            algorithm_params: crate::model::ParamMap::from_json(&params).unwrap(),
            vector_name: Some("v".into()),
            normalize_features: true,
            description: None,
            sample_size: None,
            store_results: true,
            include_members: false,
            compute_metrics: true,
            save_artifacts: false,
            stream_artifacts: false,
            labeling: None,
            attribute_grouping: None,
        }
    }

    #[test]
    fn every_algorithm_of_the_contract_is_built() {
        for alg in Algorithm::ALL {
            assert!(
                Plan::from_request(&request(alg, serde_json::json!({}))).is_ok(),
                "{} with its defaults",
                alg.as_str()
            );
        }
    }

    #[test]
    fn attribute_based_refuses_algorithm_params() {
        let e = Plan::from_request(&request(
            Algorithm::AttributeBased,
            serde_json::json!({"n_clusters": 3}),
        ))
        .err()
        .unwrap();
        assert_eq!(
            e.field.as_deref(),
            Some("config.algorithm_params.n_clusters")
        );
    }

    #[test]
    fn size_bounded_parameters_are_refused_above_their_bound_naming_sample_size() {
        let plan = Plan::from_request(&request(
            Algorithm::Agglomerative,
            serde_json::json!({"linkage": "complete", "n_clusters": 2}),
        ))
        .unwrap();
        let (bound, _) = plan.max_documents().expect("complete linkage is bounded");
        assert!(plan.check_against_data(bound).is_ok());
        let e = plan.check_against_data(bound + 1).unwrap_err();
        assert_eq!(e.code, crate::model::ErrorCode::InvalidParameter);
        assert_eq!(e.field.as_deref(), Some("sample_size"));
        assert!(e.message.contains(&bound.to_string()), "{}", e.message);

        let single = Plan::from_request(&request(
            Algorithm::Agglomerative,
            serde_json::json!({"linkage": "single"}),
        ))
        .unwrap();
        assert!(
            single.max_documents().is_none(),
            "single linkage runs on an MST"
        );
    }

    #[test]
    fn algorithm_errors_name_the_parameter_under_algorithm_params() {
        let e = Plan::from_request(&request(
            Algorithm::GaussianMixture,
            serde_json::json!({"covariance_type": "banded"}),
        ))
        .err()
        .unwrap();
        assert_eq!(
            e.field.as_deref(),
            Some("config.algorithm_params.covariance_type")
        );
    }
}
