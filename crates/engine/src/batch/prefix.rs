//! The prefix cache: KV of recently finished sequences, kept (up to a byte budget, least recently used first out)
//! so that a request sharing a prefix with one of them starts from it instead of recomputing it.
//!
//! A request whose prompt extends a whole entry (the next turn of a chat) takes that entry's cache over by move, so
//! a conversation's KV is held once, not twice: the entry would be replaced by the longer sequence when it finishes
//! anyway ([`PrefixCache::insert`]), and a sequence that ends without finishing gives its prefix back
//! ([`PrefixCache::give_back`]). A request sharing only part of an entry starts from a copy of that part.

use crate::KvCache;

struct Entry {
    /// The tokens whose keys and values `cache` holds (`tokens.len() == cache.len()`).
    tokens: Vec<u32>,
    cache: KvCache,
}

pub(super) struct PrefixCache {
    /// Least recently used first.
    entries: Vec<Entry>,
    bytes: usize,
    budget: usize,
}

impl PrefixCache {
    pub fn new(budget: usize) -> PrefixCache {
        PrefixCache {
            entries: Vec::new(),
            bytes: 0,
            budget,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps a finished sequence's KV. An entry that is a prefix of the new one is replaced by it; a new one that
    /// is a prefix of an entry only refreshes that entry.
    pub fn insert(&mut self, tokens: Vec<u32>, mut cache: KvCache) {
        debug_assert_eq!(tokens.len(), cache.len());
        if tokens.is_empty() || self.budget == 0 {
            return;
        }
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.tokens.starts_with(&tokens))
        {
            let e = self.entries.remove(i);
            self.entries.push(e);
            return;
        }
        cache.shrink_to_fit();
        let size = cache.bytes();
        if size > self.budget {
            return;
        }
        let mut i = 0;
        while i < self.entries.len() {
            if tokens.starts_with(&self.entries[i].tokens) {
                self.bytes -= self.entries.remove(i).cache.bytes();
            } else {
                i += 1;
            }
        }
        self.bytes += size;
        self.entries.push(Entry { tokens, cache });
        while self.bytes > self.budget {
            self.bytes -= self.entries.remove(0).cache.bytes();
        }
    }

    /// A cache holding the longest prefix (at most `max` tokens) that `prompt` shares with an entry, or None
    /// when no entry shares a token with it: the entry itself, taken out, when all of it is that prefix; else a
    /// copy of the shared part.
    pub fn take(&mut self, prompt: &[u32], max: usize) -> Option<KvCache> {
        let (best, n) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(max)))
            .max_by_key(|&(i, n)| (n, i))?;
        if n == 0 {
            return None;
        }
        let e = self.entries.remove(best);
        if n == e.tokens.len() {
            self.bytes -= e.cache.bytes();
            return Some(e.cache);
        }
        let copy = e.cache.prefix_copy(n);
        self.entries.push(e);
        Some(copy)
    }

    /// Takes back the first `n` positions of a sequence that ends without finishing (cancelled or failed), whose
    /// `prompt` began with them: they may be an entry it took over. Nothing changes when an entry already holds
    /// them.
    pub fn give_back(&mut self, prompt: &[u32], mut cache: KvCache, n: usize) {
        cache.truncate(n);
        let n = cache.len();
        self.insert(prompt[..n].to_vec(), cache);
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
