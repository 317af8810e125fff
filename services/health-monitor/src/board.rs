//! The current findings of every source (Kubernetes, local probes, PromQL checks, control
//! plane), keyed by the object they are about, plus each source's population (how many things
//! it watches) for the health score.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::finding::{Finding, Severity};

/// Where findings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Kubernetes watchers.
    Kubernetes,
    /// The API server's health endpoints and the control-plane `up` query.
    ControlPlane,
    /// Local HTTP probes.
    Local,
    /// Configured PromQL checks.
    Prometheus,
}

#[derive(Debug, Default)]
struct FindingsBySource {
    findings: HashMap<Source, HashMap<String, Vec<Finding>>>,
    population: HashMap<Source, usize>,
    generation: u64,
}

/// The findings that hold now, by source (Kubernetes, local probes, Prometheus). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CurrentFindings {
    inner: Arc<RwLock<FindingsBySource>>,
}

fn write(inner: &RwLock<FindingsBySource>) -> std::sync::RwLockWriteGuard<'_, FindingsBySource> {
    inner
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read(inner: &RwLock<FindingsBySource>) -> std::sync::RwLockReadGuard<'_, FindingsBySource> {
    inner
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CurrentFindings {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the findings of one object of `source` (empty removes it).
    pub fn set_object(&self, source: Source, object: &str, findings: Vec<Finding>) {
        let mut inner = write(&self.inner);
        let map = inner.findings.entry(source).or_default();
        let changed = if findings.is_empty() {
            map.remove(object).is_some()
        } else if map.get(object) != Some(&findings) {
            map.insert(object.to_owned(), findings);
            true
        } else {
            false
        };
        if changed {
            inner.generation += 1;
        }
    }

    /// Replaces every finding of `source`, grouped by object key.
    pub fn replace(&self, source: Source, findings: HashMap<String, Vec<Finding>>) {
        let mut inner = write(&self.inner);
        let findings: HashMap<String, Vec<Finding>> = findings
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if inner.findings.get(&source) != Some(&findings) {
            inner.findings.insert(source, findings);
            inner.generation += 1;
        }
    }

    /// Replaces every finding of `source`, one object per finding.
    pub fn replace_flat(&self, source: Source, findings: Vec<Finding>) {
        let mut grouped: HashMap<String, Vec<Finding>> = HashMap::new();
        for f in findings {
            grouped.entry(f.key()).or_default().push(f);
        }
        self.replace(source, grouped);
    }

    /// Sets how many things `source` watches.
    pub fn set_population(&self, source: Source, n: usize) {
        write(&self.inner).population.insert(source, n);
    }

    /// A counter that changes whenever the findings change.
    pub fn generation(&self) -> u64 {
        read(&self.inner).generation
    }

    /// Every current finding, deduplicated by alert labels, in a stable order.
    pub fn all(&self) -> Vec<Finding> {
        let inner = read(&self.inner);
        let mut by_key: BTreeMap<String, Finding> = BTreeMap::new();
        for objects in inner.findings.values() {
            for f in objects.values().flatten() {
                by_key.entry(f.key()).or_insert_with(|| f.clone());
            }
        }
        by_key.into_values().collect()
    }

    /// 0..1: the share of watched things without a critical or warning finding (a warning
    /// counts half); 1 when nothing is watched.
    pub fn health_score(&self) -> f64 {
        let inner = read(&self.inner);
        let population: usize = inner.population.values().sum();
        if population == 0 {
            return if inner.findings.values().all(HashMap::is_empty) {
                1.0
            } else {
                0.0
            };
        }
        let mut penalty = 0.0;
        for objects in inner.findings.values() {
            for findings in objects.values() {
                let worst = findings.iter().map(|f| f.severity).max();
                penalty += match worst {
                    Some(Severity::Critical) => 1.0,
                    Some(Severity::Warning) => 0.5,
                    _ => 0.0,
                };
            }
        }
        (1.0 - penalty / population as f64).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{FindingKind, ObjectRef};

    fn finding(name: &str, severity: Severity) -> Finding {
        Finding::new(
            FindingKind::PodNotReady,
            severity,
            ObjectRef::new("Pod", Some("ns"), name),
            "s",
            "d",
        )
    }

    #[test]
    fn objects_are_set_and_removed_and_the_score_follows() {
        let board = CurrentFindings::new();
        board.set_population(Source::Kubernetes, 4);
        assert_eq!(board.health_score(), 1.0);
        let g0 = board.generation();
        board.set_object(
            Source::Kubernetes,
            "Pod/ns/a",
            vec![finding("a", Severity::Critical)],
        );
        board.set_object(
            Source::Kubernetes,
            "Pod/ns/b",
            vec![finding("b", Severity::Warning)],
        );
        assert!(board.generation() > g0);
        assert_eq!(board.all().len(), 2);
        assert!((board.health_score() - (1.0 - 1.5 / 4.0)).abs() < 1e-9);
        let g1 = board.generation();
        board.set_object(
            Source::Kubernetes,
            "Pod/ns/b",
            vec![finding("b", Severity::Warning)],
        );
        assert_eq!(
            board.generation(),
            g1,
            "an unchanged object does not bump the generation"
        );
        board.set_object(Source::Kubernetes, "Pod/ns/a", vec![]);
        assert_eq!(board.all().len(), 1);
        board.replace_flat(Source::Kubernetes, vec![]);
        assert!(board.all().is_empty());
        assert_eq!(board.health_score(), 1.0);
    }
}
