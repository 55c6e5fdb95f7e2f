//! The algorithm of a run with its validated parameters: checked before any data is read,
//! checked again against the loaded data, then fitted.

use crate::algorithms::agglomerative::{self, AgglomerativeParams};
use crate::algorithms::assign::PlacementRule;
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

/// A fitted run: the labels with their centres, the parameters as they were used
/// (defaults and data-dependent choices, such as mean-shift's estimated bandwidth,
/// resolved) for the run record, and how the fit places vectors it was not fitted on
/// (`crate::algorithms::assign` defines each algorithm's rule).
pub(super) struct Fitted {
    pub labelled: Labelled,
    pub resolved_params: serde_json::Value,
    /// How the fit places vectors it did not see (the rest of a sample, `assign`).
    pub rule: PlacementRule,
}

/// The algorithm's parameters checked as a run checks them: into the typed parameters
/// before any data is read, against `documents` when given, as once the data is loaded,
/// and resolved as the run record writes them. For `crate::fuzzing`, which must reach
/// every check a request alone can trigger.
pub(crate) fn check_params(
    req: &ExecuteRequest,
    documents: Option<usize>,
) -> ApiResult<serde_json::Value> {
    let plan = Plan::from_request(req)?;
    if let Some(n) = documents {
        plan.check_against_data(n)?;
    }
    Ok(serde_json::json!({ "seed": plan.seed(), "params": plan.resolved_params() }))
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
        let (found, rule) = match self {
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
                    rule: PlacementRule::NearestCentroid,
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
                    rule: PlacementRule::NearestCentroid,
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
                    rule: PlacementRule::NearestCentroid,
                });
            }
            Plan::Dbscan(p) => {
                let (found, is_core) = dbscan::fit_with_cores(x, p, ctx)?;
                let rule = PlacementRule::dbscan(&found.labels, &is_core, p);
                (found, rule)
            }
            Plan::Hdbscan(p) => {
                let (found, core) = hdbscan::fit_with_core_distances(x, p, ctx)?;
                let rule = PlacementRule::hdbscan(&found.labels, &core, p);
                (found, rule)
            }
            Plan::Optics(p) => {
                let (found, graph) = optics::fit_with_graph(x, p, ctx)?;
                let rule = PlacementRule::optics(&found.labels, &graph.core_distances, p);
                (found, rule)
            }
            Plan::Agglomerative(p) => {
                let found = agglomerative::fit(x, p, ctx)?;
                let rule = PlacementRule::agglomerative(&found.labels, p);
                (found, rule)
            }
            Plan::Spectral(p) => {
                let found = spectral::fit(x, p, ctx)?;
                let rule = PlacementRule::spectral(&found.labels);
                (found, rule)
            }
            Plan::AttributeBased => {
                return Err(ApiError::internal(
                    "attribute_based groups attributes; it has no vector fit",
                ));
            }
        };
        Ok(Fitted {
            labelled: Labelled::from_labels(x, found.labels, found.n_clusters),
            resolved_params,
            rule,
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

    #[test]
    fn every_vector_fit_gives_its_placement_rule() {
        use crate::algorithms::assign::AssignMetric;
        use crate::model::DeviceKind;
        // Three tight groups of 20 rows in the plane.
        let data: Vec<f32> = (0..60)
            .flat_map(|i| {
                let (cx, cy) = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)][i % 3];
                let t = (i / 3) as f32 * 0.05;
                [cx + t, cy + (t * 7.0) % 1.0]
            })
            .collect();
        let x = Matrix::from_vec(60, 2, data).unwrap();
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        let fit = |alg, params| {
            Plan::from_request(&request(alg, params))
                .unwrap()
                .fit(&x, &ctx)
                .unwrap()
        };
        for (alg, params) in [
            (Algorithm::KMeans, serde_json::json!({"n_clusters": 3})),
            (
                Algorithm::GaussianMixture,
                serde_json::json!({"n_components": 3}),
            ),
            (Algorithm::MeanShift, serde_json::json!({})),
        ] {
            assert_eq!(
                fit(alg, params).rule,
                PlacementRule::NearestCentroid,
                "{}",
                alg.as_str()
            );
        }
        let core_rule = |f: &Fitted| match &f.rule {
            PlacementRule::NearestCore {
                rows,
                radius,
                metric,
            } => (rows.clone(), radius.clone(), *metric),
            PlacementRule::NearestCentroid => panic!("a core rule"),
        };

        let f = fit(
            Algorithm::Dbscan,
            serde_json::json!({"eps": 0.6, "min_samples": 4, "metric": "cosine"}),
        );
        let (rows, radius, metric) = core_rule(&f);
        assert!(!rows.is_empty());
        assert!(radius.iter().all(|&r| r == 0.6));
        assert_eq!(metric, AssignMetric::Cosine);

        let f = fit(
            Algorithm::Hdbscan,
            serde_json::json!({"min_cluster_size": 5}),
        );
        let (rows, radius, metric) = core_rule(&f);
        let clustered = f.labelled.labels.iter().filter(|&&l| l >= 0).count();
        assert_eq!(rows.len(), clustered);
        assert!(radius.iter().all(|r| r.is_finite() && *r > 0.0));
        assert_eq!(metric, AssignMetric::Euclidean);

        let f = fit(
            Algorithm::Optics,
            serde_json::json!({"min_samples": 5, "cluster_method": "dbscan", "eps": 2.0}),
        );
        let (rows, radius, _) = core_rule(&f);
        assert!(!rows.is_empty());
        assert!(radius.iter().all(|&r| r == 2.0));

        let f = fit(
            Algorithm::Agglomerative,
            serde_json::json!({"n_clusters": 3, "linkage": "average", "metric": "l1"}),
        );
        let (rows, radius, metric) = core_rule(&f);
        assert_eq!(rows, (0..60).collect::<Vec<u32>>());
        assert!(radius.iter().all(|r| r.is_infinite()));
        assert_eq!(metric, AssignMetric::Manhattan);

        let f = fit(Algorithm::Spectral, serde_json::json!({"n_clusters": 3}));
        let (rows, _, metric) = core_rule(&f);
        assert_eq!(rows.len(), 60);
        assert_eq!(metric, AssignMetric::Euclidean);
    }
}
