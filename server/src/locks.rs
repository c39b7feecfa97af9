//! Striped locks of the pipeline.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

/// Striped locks: an update holds the stripe of its key and the stripe of
/// its name, so two updates from one key (the `seq` check) or for one name
/// (ownership) never interleave, while unrelated updates run in parallel.
pub struct Stripes {
    stripes: Vec<Mutex<()>>,
}

/// 256 stripes: collisions only cost a little parallelism.
const STRIPES: usize = 256;

impl Default for Stripes {
    fn default() -> Stripes {
        Stripes {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl Stripes {
    fn index(s: &str) -> usize {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        (h.finish() as usize) % STRIPES
    }

    /// Locks the stripes of `key` and `name`, lower index first, so no two
    /// callers can wait on each other in a cycle.
    pub async fn lock(&self, key: &str, name: &str) -> Vec<MutexGuard<'_, ()>> {
        let (a, b) = (Stripes::index(key), Stripes::index(name));
        let mut order = vec![a.min(b)];
        if a != b {
            order.push(a.max(b));
        }
        let mut guards = Vec::with_capacity(2);
        for i in order {
            if let Some(m) = self.stripes.get(i) {
                guards.push(m.lock().await);
            }
        }
        guards
    }
}
