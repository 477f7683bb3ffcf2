//! The timer structure: one min-heap of (wake time, job) for all jobs.
//!
//! A job has at most one live entry; a change bumps the job's generation and
//! pushes a fresh entry, and stale entries are dropped when they surface. So
//! scheduling cost is O(log n) per fire and per change, with no per-job
//! polling, and 10,000+ jobs cost one heap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use jiff::Timestamp;

#[derive(Debug, Default)]
pub struct Timeline {
    heap: BinaryHeap<Reverse<(Timestamp, u64, String)>>,
    generation: HashMap<String, u64>,
    next_gen: u64,
}

impl Timeline {
    /// Sets (or replaces) the job's next wake time; `None` removes the job.
    pub fn set(&mut self, job: &str, at: Option<Timestamp>) {
        self.next_gen += 1;
        let gen = self.next_gen;
        match at {
            Some(t) => {
                self.generation.insert(job.to_string(), gen);
                self.heap.push(Reverse((t, gen, job.to_string())));
            }
            None => {
                self.generation.remove(job);
            }
        }
        if self.heap.len() > 4 * self.generation.len() + 1024 {
            self.compact();
        }
    }

    /// The earliest live wake time.
    pub fn peek(&mut self) -> Option<Timestamp> {
        self.drop_stale();
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Removes and returns the jobs whose wake time is at or before `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Vec<String> {
        let mut due = Vec::new();
        loop {
            self.drop_stale();
            match self.heap.peek() {
                Some(Reverse((t, _, _))) if *t <= now => {
                    if let Some(Reverse((_, _, job))) = self.heap.pop() {
                        self.generation.remove(&job);
                        due.push(job);
                    }
                }
                _ => return due,
            }
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.generation.is_empty()
    }

    fn is_live(&self, gen: u64, job: &str) -> bool {
        self.generation.get(job) == Some(&gen)
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse((_, gen, job))) = self.heap.peek() {
            if self.is_live(*gen, job) {
                return;
            }
            self.heap.pop();
        }
    }

    fn compact(&mut self) {
        let heap = std::mem::take(&mut self.heap);
        self.heap = heap
            .into_iter()
            .filter(|Reverse((_, gen, job))| self.generation.get(job) == Some(gen))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    #[test]
    fn pops_in_order_and_ignores_replaced_entries() {
        let mut t = Timeline::default();
        t.set("a", Some(ts(30)));
        t.set("b", Some(ts(10)));
        t.set("c", Some(ts(20)));
        t.set("b", Some(ts(40))); // replaced
        t.set("c", None); // removed
        assert_eq!(t.peek(), Some(ts(30)));
        assert_eq!(t.pop_due(ts(35)), vec!["a"]);
        assert_eq!(t.pop_due(ts(39)), Vec::<String>::new());
        assert_eq!(t.pop_due(ts(40)), vec!["b"]);
        assert!(t.is_empty());
        assert_eq!(t.peek(), None);
    }

    #[test]
    fn many_updates_stay_bounded() {
        let mut t = Timeline::default();
        for i in 0..100_000 {
            t.set("x", Some(ts(i)));
        }
        assert!(t.heap.len() < 5000, "heap grew to {}", t.heap.len());
        assert_eq!(t.peek(), Some(ts(99_999)));
    }
}
