//! `attribute_based` clustering: rows grouped by the values of configured attributes
//! instead of by a vector column.
//!
//! Input is what the store loads for the configured dotted paths, in order:
//! `attributes[a][row]` is that row's list of values for attribute `a` (empty = null or
//! missing, one value = a scalar, several = a list-valued attribute). Only the values
//! matter: `category` and `product.details.brand` are treated alike.
//!
//! Semantics:
//! - **Flat** (`hierarchical = false`): one group per distinct tuple of attribute values.
//!   A missing value is `None` and forms its own explicit null group; no row is dropped.
//! - **Hierarchical**: a tree. Level 0 groups by the first attribute, level 1 by (first,
//!   second) under it, and so on; every node is a group, the leaves are the full-depth
//!   tuples, and a parent's `size` is the total of its leaves' memberships. Null is a value
//!   at every level (a `None` node can have children).
//! - **List values** (`aggregation`): `most_frequent` takes, among the row's values, the
//!   one that the most rows of the whole column contain (a row listing a value twice
//!   counts once; ties go to the lexicographically smallest, by bytes); `first` takes the
//!   row's first value; `all` gives the row one membership per distinct value, and over
//!   several list attributes one per combination (the cartesian product), at most
//!   [`MAX_MEMBERSHIPS_PER_ROW`] per row, or the run is refused. A scalar or null value
//!   behaves the same under all three.
//! - **Group order** is deterministic and independent of row order: level by level
//!   (parents before children), and within a level by key, comparing values by bytes with
//!   `None` after every value. Memberships are sorted by row, then group.
//! - With no attributes at all, every row is in one flat group with an empty key.
//!
//! Cost: one streaming pass over the rows (two for a list column under `most_frequent`,
//! whose column frequencies come first) with hash maps from value to id and from
//! (parent node, value) to node, then a sort of the distinct values and nodes. Memory is
//! O(rows + groups × attributes); no string is copied per row.

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::model::{ApiError, Cancelled, ProgressEvent, RunContext};

/// The most memberships one row may have under `Aggregation::All` (the product, over the
/// attributes, of its distinct values per attribute). It bounds the membership list at
/// 64 × rows, so one row with long lists cannot blow up memory.
pub const MAX_MEMBERSHIPS_PER_ROW: usize = 64;

/// Rows between cancellation checkpoints and progress reports (a few milliseconds of work).
const CHECK_EVERY: usize = 1 << 16;

const STAGE: &str = "attribute_based:grouping";

/// The request field that `Aggregation::All`'s bound concerns.
const AGGREGATION_FIELD: &str = "config.attribute_config.aggregation_method";

/// The parent id of a top-level trie node.
const ROOT: u32 = u32::MAX;
/// The value id of a null (missing) value.
const NULL: u32 = u32::MAX;

/// How a list-valued attribute picks the value(s) a row is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    MostFrequent,
    First,
    All,
}

impl Aggregation {
    /// The wire name (`most_frequent`, `first`, `all`), or None for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "most_frequent" => Some(Aggregation::MostFrequent),
            "first" => Some(Aggregation::First),
            "all" => Some(Aggregation::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::MostFrequent => "most_frequent",
            Aggregation::First => "first",
            Aggregation::All => "all",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupingOptions {
    pub hierarchical: bool,
    pub aggregation: Aggregation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The value of each attribute on the path to this group (length = level + 1 when
    /// hierarchical, = number of attributes when flat); None = the explicit null group.
    pub key: Vec<Option<String>>,
    /// Index into `Grouping::groups` of the enclosing group (hierarchical only).
    pub parent: Option<usize>,
    /// 0 = top (hierarchical); 0 for every flat group.
    pub level: usize,
    /// Flat groups are all leaves.
    pub is_leaf: bool,
    /// Memberships in this group; a parent counts its subtree's.
    pub size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub groups: Vec<Group>,
    /// (row, group) memberships, sorted by row then group; leaves only (one per row, or
    /// several with Aggregation::All on a list value). Parents are implied.
    pub memberships: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupingError {
    #[error("the run was cancelled")]
    Cancelled,
    /// A row whose list values under `Aggregation::All` combine into more than
    /// [`MAX_MEMBERSHIPS_PER_ROW`] memberships.
    #[error(
        "row {row} has {count} combinations of list values under aggregation_method \"all\", more than the {MAX_MEMBERSHIPS_PER_ROW} allowed per row; use \"most_frequent\" or \"first\", or group by fewer list-valued attributes"
    )]
    TooManyMemberships { row: usize, count: usize },
    /// Row or group ids would not fit the u32 ids of `Grouping::memberships`.
    #[error("too many {what} for attribute grouping (at most {max}); use sample_size")]
    TooLarge { what: &'static str, max: usize },
}

impl From<Cancelled> for GroupingError {
    fn from(_: Cancelled) -> Self {
        GroupingError::Cancelled
    }
}

impl From<GroupingError> for ApiError {
    fn from(e: GroupingError) -> Self {
        match e {
            GroupingError::Cancelled => Cancelled.into(),
            GroupingError::TooManyMemberships { .. } => {
                ApiError::invalid_parameter(AGGREGATION_FIELD, e.to_string())
            }
            GroupingError::TooLarge { .. } => {
                ApiError::payload_too_large(Some("sample_size"), e.to_string())
            }
        }
    }
}

/// Group `n_rows` rows by `attributes` (`[attribute][row]` → values; a row past the end of
/// an attribute's list reads as null). See the module documentation for the semantics.
pub fn group(
    attributes: &[Vec<Vec<String>>],
    n_rows: usize,
    options: &GroupingOptions,
    ctx: &RunContext,
) -> Result<Grouping, GroupingError> {
    ctx.checkpoint()?;
    report(ctx, 0.0);
    if n_rows > u32::MAX as usize {
        return Err(GroupingError::TooLarge {
            what: "rows",
            max: u32::MAX as usize,
        });
    }
    if attributes.is_empty() {
        return Ok(single_group(n_rows));
    }
    let mut columns: Vec<Column<'_>> = attributes.iter().map(|c| Column::new(c)).collect();
    if options.aggregation == Aggregation::MostFrequent {
        for c in &mut columns {
            c.count_frequencies(n_rows, ctx)?;
        }
    }
    let mut trie = Trie::new(attributes.len());
    let mut memberships: Vec<(u32, u32)> = Vec::with_capacity(n_rows);
    let mut choices: Vec<Vec<u32>> = vec![Vec::new(); attributes.len()];
    let mut odometer = vec![0usize; attributes.len()];
    for row in 0..n_rows {
        if row % CHECK_EVERY == 0 && row > 0 {
            ctx.checkpoint()?;
            report(ctx, 0.9 * row as f32 / n_rows as f32);
        }
        let mut count = 1usize;
        for (c, out) in columns.iter_mut().zip(choices.iter_mut()) {
            c.choose(row, options.aggregation, out)?;
            count = count.saturating_mul(out.len());
        }
        if count > MAX_MEMBERSHIPS_PER_ROW {
            return Err(GroupingError::TooManyMemberships { row, count });
        }
        // Every combination of the row's choices, last attribute fastest.
        odometer.fill(0);
        loop {
            let mut node = ROOT;
            for (a, &i) in odometer.iter().enumerate() {
                node = trie.child(node, choices[a][i])?;
            }
            trie.sizes[node as usize] += 1;
            memberships.push((row as u32, node));
            if !advance(&mut odometer, &choices) {
                break;
            }
        }
    }
    ctx.checkpoint()?;
    report(ctx, 0.9);
    let ranks: Vec<Vec<u32>> = columns.iter().map(Column::ranks).collect();
    ctx.checkpoint()?;
    let grouping = trie.into_grouping(&columns, &ranks, options.hierarchical, memberships);
    report(ctx, 1.0);
    Ok(grouping)
}

/// A readable name of a group: "category=Electronics / brand=Acme", "brand=(null)". An
/// attribute without a name in `attribute_names` is shown by its position (`#2=...`).
pub fn describe(group: &Group, attribute_names: &[String]) -> String {
    let mut out = String::new();
    for (a, value) in group.key.iter().enumerate() {
        if a > 0 {
            out.push_str(" / ");
        }
        match attribute_names.get(a) {
            Some(name) => out.push_str(name),
            None => {
                out.push('#');
                out.push_str(&a.to_string());
            }
        }
        out.push('=');
        out.push_str(value.as_deref().unwrap_or("(null)"));
    }
    out
}

fn report(ctx: &RunContext, fraction: f32) {
    ctx.progress(ProgressEvent {
        stage: STAGE,
        fraction,
        iteration: None,
        inertia: None,
        documents: None,
    });
}

/// Next combination of indices into `choices`; false once every one has been visited.
fn advance(odometer: &mut [usize], choices: &[Vec<u32>]) -> bool {
    for a in (0..odometer.len()).rev() {
        odometer[a] += 1;
        if odometer[a] < choices[a].len() {
            return true;
        }
        odometer[a] = 0;
    }
    false
}

fn single_group(n_rows: usize) -> Grouping {
    if n_rows == 0 {
        return Grouping {
            groups: Vec::new(),
            memberships: Vec::new(),
        };
    }
    Grouping {
        groups: vec![Group {
            key: Vec::new(),
            parent: None,
            level: 0,
            is_leaf: true,
            size: n_rows,
        }],
        memberships: (0..n_rows as u32).map(|r| (r, 0)).collect(),
    }
}

/// One attribute's values, interned: ids in first-seen order (the final order comes from
/// `ranks`), borrowed from the input.
struct Column<'a> {
    rows: &'a [Vec<String>],
    ids: HashMap<&'a str, u32>,
    values: Vec<&'a str>,
    /// Rows containing each value id; filled only for a list column under most_frequent.
    frequency: Vec<u32>,
    scratch: Vec<u32>,
}

impl<'a> Column<'a> {
    fn new(rows: &'a [Vec<String>]) -> Self {
        Column {
            rows,
            ids: HashMap::new(),
            values: Vec::new(),
            frequency: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn values_of(&self, row: usize) -> &'a [String] {
        self.rows.get(row).map_or(&[], Vec::as_slice)
    }

    fn intern(&mut self, value: &'a str) -> Result<u32, GroupingError> {
        if let Some(&id) = self.ids.get(value) {
            return Ok(id);
        }
        // NULL is u32::MAX, so ids stop one below it.
        let max = u32::MAX as usize - 1;
        if self.values.len() >= max {
            return Err(GroupingError::TooLarge {
                what: "distinct values of one attribute",
                max,
            });
        }
        let id = self.values.len() as u32;
        self.ids.insert(value, id);
        self.values.push(value);
        Ok(id)
    }

    /// Column frequencies for most_frequent; only a column with a list value needs them.
    fn count_frequencies(&mut self, n_rows: usize, ctx: &RunContext) -> Result<(), GroupingError> {
        let end = n_rows.min(self.rows.len());
        if !self.rows[..end].iter().any(|v| v.len() > 1) {
            return Ok(());
        }
        for row in 0..end {
            if row % CHECK_EVERY == 0 && row > 0 {
                ctx.checkpoint()?;
            }
            let mut distinct = std::mem::take(&mut self.scratch);
            distinct.clear();
            for v in self.values_of(row) {
                distinct.push(self.intern(v)?);
            }
            distinct.sort_unstable();
            distinct.dedup();
            for &id in &distinct {
                let id = id as usize;
                if self.frequency.len() <= id {
                    self.frequency.resize(id + 1, 0);
                }
                self.frequency[id] += 1;
            }
            self.scratch = distinct;
        }
        Ok(())
    }

    /// The value id(s) `row` is grouped by, into `out` (`NULL` for a missing value).
    fn choose(
        &mut self,
        row: usize,
        aggregation: Aggregation,
        out: &mut Vec<u32>,
    ) -> Result<(), GroupingError> {
        out.clear();
        let values = self.values_of(row);
        match values {
            [] => out.push(NULL),
            [only] => out.push(self.intern(only)?),
            [first, ..] => match aggregation {
                Aggregation::First => out.push(self.intern(first)?),
                Aggregation::MostFrequent => {
                    let mut best = first.as_str();
                    let mut best_freq = self.frequency_of(best);
                    for v in &values[1..] {
                        let f = self.frequency_of(v);
                        if f > best_freq || (f == best_freq && v.as_str() < best) {
                            best = v;
                            best_freq = f;
                        }
                    }
                    out.push(self.intern(best)?);
                }
                Aggregation::All => {
                    for v in values {
                        out.push(self.intern(v)?);
                    }
                    out.sort_unstable();
                    out.dedup();
                }
            },
        }
        Ok(())
    }

    fn frequency_of(&self, value: &str) -> u32 {
        self.ids
            .get(value)
            .and_then(|&id| self.frequency.get(id as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Rank of each value id in byte order of the values (`NULL` ranks after all of them,
    /// as `values.len()`).
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.values.len() as u32).collect();
        order.sort_unstable_by_key(|&id| self.values[id as usize]);
        let mut rank = vec![0u32; self.values.len()];
        for (r, &id) in order.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        rank
    }

    fn value(&self, id: u32) -> Option<String> {
        self.values.get(id as usize).map(|v| (*v).to_owned())
    }
}

/// The prefix tree of value tuples: node = (parent node, value id) at a level; the nodes of
/// the last level are the leaves.
struct Trie {
    depth: usize,
    children: HashMap<(u32, u32), u32>,
    parent: Vec<u32>,
    value: Vec<u32>,
    level: Vec<u32>,
    /// Memberships of each leaf (0 for inner nodes until `into_grouping` sums them up).
    sizes: Vec<usize>,
}

impl Trie {
    fn new(depth: usize) -> Self {
        Trie {
            depth,
            children: HashMap::new(),
            parent: Vec::new(),
            value: Vec::new(),
            level: Vec::new(),
            sizes: Vec::new(),
        }
    }

    fn child(&mut self, parent: u32, value: u32) -> Result<u32, GroupingError> {
        if let Some(&node) = self.children.get(&(parent, value)) {
            return Ok(node);
        }
        // ROOT is u32::MAX, so ids stop one below it.
        let max = u32::MAX as usize - 1;
        if self.parent.len() >= max {
            return Err(GroupingError::TooLarge {
                what: "groups",
                max,
            });
        }
        let node = self.parent.len() as u32;
        let level = if parent == ROOT {
            0
        } else {
            self.level[parent as usize] + 1
        };
        self.children.insert((parent, value), node);
        self.parent.push(parent);
        self.value.push(value);
        self.level.push(level);
        self.sizes.push(0);
        Ok(node)
    }

    fn into_grouping(
        mut self,
        columns: &[Column<'_>],
        ranks: &[Vec<u32>],
        hierarchical: bool,
        mut memberships: Vec<(u32, u32)>,
    ) -> Grouping {
        drop(std::mem::take(&mut self.children));
        let n = self.parent.len();
        let value_rank = |node: usize| {
            let level = self.level[node] as usize;
            match self.value[node] {
                NULL => columns[level].values.len() as u32,
                id => ranks[level][id as usize],
            }
        };
        // Position of each node in the level-by-level key order; a level's sort key is
        // (parent's position, own value rank), which is the order of the full keys
        // because the parents were placed before.
        let mut by_level: Vec<Vec<u32>> = vec![Vec::new(); self.depth];
        for node in 0..n {
            by_level[self.level[node] as usize].push(node as u32);
        }
        let mut position = vec![0u32; n];
        let mut order: Vec<u32> = Vec::with_capacity(n);
        for nodes in &mut by_level {
            nodes.sort_unstable_by_key(|&v| {
                let p = self.parent[v as usize];
                let parent_pos = if p == ROOT { 0 } else { position[p as usize] };
                (parent_pos, value_rank(v as usize))
            });
            for &v in nodes.iter() {
                position[v as usize] = order.len() as u32;
                order.push(v);
            }
        }
        // Parents come before children in `order`, so summing in reverse is bottom-up.
        for &v in order.iter().rev() {
            let p = self.parent[v as usize];
            if p != ROOT {
                self.sizes[p as usize] += self.sizes[v as usize];
            }
        }
        let emitted: &[u32] = if hierarchical {
            &order
        } else {
            by_level.last().map_or(&[], Vec::as_slice)
        };
        let mut group_id = vec![u32::MAX; n];
        for (g, &v) in emitted.iter().enumerate() {
            group_id[v as usize] = g as u32;
        }
        let mut groups: Vec<Group> = Vec::with_capacity(emitted.len());
        for &v in emitted {
            let v = v as usize;
            let level = self.level[v] as usize;
            let parent = self.parent[v];
            let own = columns[level].value(self.value[v]);
            let key = if hierarchical {
                let mut key = match parent {
                    ROOT => Vec::with_capacity(1),
                    p => groups[group_id[p as usize] as usize].key.clone(),
                };
                key.push(own);
                key
            } else {
                let mut key = vec![None; self.depth];
                key[level] = own;
                let mut up = parent;
                while up != ROOT {
                    let u = up as usize;
                    key[self.level[u] as usize] =
                        columns[self.level[u] as usize].value(self.value[u]);
                    up = self.parent[u];
                }
                key
            };
            groups.push(Group {
                key,
                parent: match parent {
                    ROOT => None,
                    _ if !hierarchical => None,
                    p => Some(group_id[p as usize] as usize),
                },
                level: if hierarchical { level } else { 0 },
                is_leaf: level + 1 == self.depth,
                size: self.sizes[v],
            });
        }
        for m in &mut memberships {
            m.1 = group_id[m.1 as usize];
        }
        // Rows are already in order; only a row with several memberships needs its own.
        for run in memberships.chunk_by_mut(|a, b| a.0 == b.0) {
            if run.len() > 1 {
                run.sort_unstable();
            }
        }
        Grouping {
            groups,
            memberships,
        }
    }
}
