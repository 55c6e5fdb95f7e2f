use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::algorithms::test_support::{Lcg, cancelled_context, fit_cancelled_at, on_threads};
use crate::model::{DeviceKind, ErrorCode};

/// A group key, and its order: value bytes with None after every value.
type Key = Vec<Option<String>>;
type SortKey = Vec<(bool, String)>;

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn flat(aggregation: Aggregation) -> GroupingOptions {
    GroupingOptions {
        hierarchical: false,
        aggregation,
    }
}

fn tree(aggregation: Aggregation) -> GroupingOptions {
    GroupingOptions {
        hierarchical: true,
        aggregation,
    }
}

/// `[attribute][row]` from rows written as `[["a"], [], ["x", "y"]]` per attribute.
fn column(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|vals| vals.iter().map(|v| (*v).to_owned()).collect())
        .collect()
}

fn key(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

fn run(attributes: &[Vec<Vec<String>>], options: &GroupingOptions) -> Grouping {
    let n = attributes.first().map_or(0, Vec::len);
    group(attributes, n, options, &ctx()).unwrap()
}

/// The keys of each row's groups, in membership order.
fn keys_of_rows(g: &Grouping, n_rows: usize) -> Vec<Vec<Vec<Option<String>>>> {
    let mut out = vec![Vec::new(); n_rows];
    for &(row, gid) in &g.memberships {
        out[row as usize].push(g.groups[gid as usize].key.clone());
    }
    out
}

#[test]
fn flat_groups_are_distinct_value_tuples_whatever_the_attribute_paths() {
    // Dotted paths only name the columns; the grouping sees values.
    let names = vec!["product.details.category".to_owned(), "brand".to_owned()];
    let attrs = vec![
        column(&[&["toys"], &["books"], &["toys"], &["books"], &["toys"]]),
        column(&[&["acme"], &["acme"], &["zeta"], &["acme"], &["acme"]]),
    ];
    let g = run(&attrs, &flat(Aggregation::MostFrequent));
    let keys: Vec<_> = g.groups.iter().map(|gr| gr.key.clone()).collect();
    assert_eq!(
        keys,
        vec![
            key(&[Some("books"), Some("acme")]),
            key(&[Some("toys"), Some("acme")]),
            key(&[Some("toys"), Some("zeta")]),
        ]
    );
    assert_eq!(
        g.groups.iter().map(|gr| gr.size).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert!(
        g.groups
            .iter()
            .all(|gr| gr.is_leaf && gr.level == 0 && gr.parent.is_none())
    );
    assert_eq!(g.memberships, vec![(0, 1), (1, 0), (2, 2), (3, 0), (4, 1)]);
    assert_eq!(
        describe(&g.groups[2], &names),
        "product.details.category=toys / brand=zeta"
    );
}

#[test]
fn missing_values_form_an_explicit_null_group_after_every_value() {
    let attrs = vec![
        column(&[&["b"], &[], &["a"], &[], &["b"]]),
        column(&[&["x"], &["x"], &[], &["y"], &[]]),
    ];
    let g = run(&attrs, &flat(Aggregation::First));
    let keys: Vec<_> = g.groups.iter().map(|gr| gr.key.clone()).collect();
    assert_eq!(
        keys,
        vec![
            key(&[Some("a"), None]),
            key(&[Some("b"), Some("x")]),
            key(&[Some("b"), None]),
            key(&[None, Some("x")]),
            key(&[None, Some("y")]),
        ]
    );
    // No row is dropped: every row has exactly one membership.
    assert_eq!(g.memberships.len(), 5);
    assert_eq!(g.memberships, vec![(0, 1), (1, 3), (2, 0), (3, 4), (4, 2)]);
    let names = vec!["category".to_owned(), "brand".to_owned()];
    assert_eq!(describe(&g.groups[0], &names), "category=a / brand=(null)");
    let only_brand = run(&attrs[1..], &flat(Aggregation::First));
    assert_eq!(describe(&only_brand.groups[2], &names[1..]), "brand=(null)");
    assert_eq!(only_brand.groups[2].size, 2);
}

#[test]
fn hierarchical_grouping_is_a_tree_with_parents_first_and_subtree_sizes() {
    let attrs = vec![
        column(&[&["toys"], &["books"], &["toys"], &[], &["toys"], &["books"]]),
        column(&[&["acme"], &["acme"], &["zeta"], &["acme"], &["acme"], &[]]),
    ];
    let g = run(&attrs, &tree(Aggregation::MostFrequent));
    let expected: Vec<(Key, Option<usize>, usize, bool, usize)> = vec![
        (key(&[Some("books")]), None, 0, false, 2),
        (key(&[Some("toys")]), None, 0, false, 3),
        (key(&[None]), None, 0, false, 1),
        (key(&[Some("books"), Some("acme")]), Some(0), 1, true, 1),
        (key(&[Some("books"), None]), Some(0), 1, true, 1),
        (key(&[Some("toys"), Some("acme")]), Some(1), 1, true, 2),
        (key(&[Some("toys"), Some("zeta")]), Some(1), 1, true, 1),
        // A null node has children like any value.
        (key(&[None, Some("acme")]), Some(2), 1, true, 1),
    ];
    let got: Vec<_> = g
        .groups
        .iter()
        .map(|gr| (gr.key.clone(), gr.parent, gr.level, gr.is_leaf, gr.size))
        .collect();
    assert_eq!(got, expected);
    // Memberships name leaves only.
    assert_eq!(
        g.memberships,
        vec![(0, 5), (1, 3), (2, 6), (3, 7), (4, 5), (5, 4)]
    );
    let names = vec!["category".to_owned(), "brand".to_owned()];
    assert_eq!(describe(&g.groups[1], &names), "category=toys");
    assert_eq!(
        describe(&g.groups[7], &names),
        "category=(null) / brand=acme"
    );
}

#[test]
fn most_frequent_takes_the_rows_value_most_frequent_in_the_whole_column() {
    // Rows containing each value: red 4, blue 3 (row 3 lists it twice and counts once;
    // twice would tie it with red and flip row 2), green 2, yellow 1.
    let colours = column(&[
        &["red"],
        &["green", "red"],
        &["red", "blue"],
        &["blue", "blue"],
        &["blue"],
        &["yellow", "green"],
        &["red"],
    ]);
    // Equal frequencies: the lexicographically smallest, whatever its position.
    let sizes = column(&[
        &["m", "l"],
        &["s"],
        &["l"],
        &["m"],
        &["s", "m", "l"],
        &[],
        &[],
    ]);
    let g = run(&[colours, sizes], &flat(Aggregation::MostFrequent));
    let rows: Vec<_> = keys_of_rows(&g, 7)
        .into_iter()
        .map(|ks| {
            assert_eq!(ks.len(), 1);
            ks[0].clone()
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            key(&[Some("red"), Some("l")]),
            key(&[Some("red"), Some("s")]),
            key(&[Some("red"), Some("l")]),
            key(&[Some("blue"), Some("m")]),
            key(&[Some("blue"), Some("l")]),
            key(&[Some("green"), None]),
            key(&[Some("red"), None]),
        ]
    );
}

#[test]
fn first_takes_the_rows_first_value() {
    let attrs = vec![column(&[&["b", "a"], &["a"], &["c", "a", "b"], &[]])];
    let g = run(&attrs, &flat(Aggregation::First));
    let keys: Vec<_> = keys_of_rows(&g, 4)
        .into_iter()
        .map(|ks| ks[0].clone())
        .collect();
    assert_eq!(
        keys,
        vec![
            key(&[Some("b")]),
            key(&[Some("a")]),
            key(&[Some("c")]),
            key(&[None])
        ]
    );
}

#[test]
fn all_gives_one_membership_per_distinct_combination_of_list_values() {
    let attrs = vec![
        column(&[&["x", "y", "x"], &["y"], &[]]),
        column(&[&["1", "2"], &[], &["2", "1"]]),
    ];
    let g = run(&attrs, &flat(Aggregation::All));
    let rows = keys_of_rows(&g, 3);
    assert_eq!(
        rows[0],
        vec![
            key(&[Some("x"), Some("1")]),
            key(&[Some("x"), Some("2")]),
            key(&[Some("y"), Some("1")]),
            key(&[Some("y"), Some("2")]),
        ]
    );
    assert_eq!(rows[1], vec![key(&[Some("y"), None])]);
    assert_eq!(
        rows[2],
        vec![key(&[None, Some("1")]), key(&[None, Some("2")])]
    );
    // Sorted by row, then group.
    let mut sorted = g.memberships.clone();
    sorted.sort_unstable();
    assert_eq!(g.memberships, sorted);
    let total: usize = g.groups.iter().map(|gr| gr.size).sum();
    assert_eq!(total, 7);

    // Hierarchical: a parent counts every membership below it.
    let h = run(&attrs, &tree(Aggregation::All));
    let x = h
        .groups
        .iter()
        .find(|gr| gr.key == key(&[Some("x")]))
        .unwrap();
    let y = h
        .groups
        .iter()
        .find(|gr| gr.key == key(&[Some("y")]))
        .unwrap();
    assert_eq!((x.size, y.size), (2, 3));
}

#[test]
fn all_refuses_a_row_with_more_than_64_memberships_as_an_aggregation_error() {
    let nine: Vec<String> = (0..9).map(|i| format!("v{i}")).collect();
    let eight: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let fits = vec![
        vec![vec!["a".to_owned()], eight.clone()],
        vec![vec!["b".to_owned()], eight.clone()],
    ];
    // 8 × 8 = 64 is allowed.
    let g = group(&fits, 2, &flat(Aggregation::All), &ctx()).unwrap();
    assert_eq!(g.memberships.len(), 1 + 64);

    let too_many = vec![
        vec![vec!["a".to_owned()], nine],
        vec![vec!["b".to_owned()], eight],
    ];
    let err = group(&too_many, 2, &flat(Aggregation::All), &ctx()).unwrap_err();
    assert_eq!(err, GroupingError::TooManyMemberships { row: 1, count: 72 });
    let api: ApiError = err.into();
    assert_eq!(api.code, ErrorCode::InvalidParameter);
    assert_eq!(
        api.field.as_deref(),
        Some("config.attribute_config.aggregation_method")
    );
    assert!(api.message.contains("72"), "{}", api.message);
    // The same lists are fine when one value per row is taken.
    let g = group(&too_many, 2, &flat(Aggregation::First), &ctx()).unwrap();
    assert_eq!(g.memberships.len(), 2);
}

#[test]
fn scalar_and_null_values_group_the_same_under_every_aggregation() {
    let attrs = vec![
        column(&[&["a"], &["b"], &[], &["a"]]),
        column(&[&["x"], &[], &["y"], &["x"]]),
    ];
    for hierarchical in [false, true] {
        let results: Vec<Grouping> = [
            Aggregation::MostFrequent,
            Aggregation::First,
            Aggregation::All,
        ]
        .into_iter()
        .map(|aggregation| {
            run(
                &attrs,
                &GroupingOptions {
                    hierarchical,
                    aggregation,
                },
            )
        })
        .collect();
        assert_eq!(results[0], results[1]);
        assert_eq!(results[0], results[2]);
    }
}

/// Random rows over small vocabularies, with nulls and lists.
fn random_attributes(n_rows: usize, n_attrs: usize, seed: u64) -> Vec<Vec<Vec<String>>> {
    let mut rng = Lcg(seed);
    (0..n_attrs)
        .map(|a| {
            (0..n_rows)
                .map(|_| {
                    let u = rng.uniform();
                    let len = if u < 0.15 {
                        0
                    } else if u < 0.8 {
                        1
                    } else {
                        2 + (rng.uniform() * 3.0) as usize
                    };
                    (0..len)
                        .map(|_| format!("v{a}_{}", (rng.uniform() * (4 + 2 * a) as f64) as usize))
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn sort_key(k: &[Option<String>]) -> SortKey {
    k.iter()
        .map(|v| (v.is_none(), v.clone().unwrap_or_default()))
        .collect()
}

/// The documented semantics, written the slow, obvious way: each row's chosen value tuples,
/// then every prefix (hierarchical) or full tuple (flat), ordered level by level by key.
fn reference(attrs: &[Vec<Vec<String>>], n: usize, options: &GroupingOptions) -> Grouping {
    let freq: Vec<HashMap<&str, usize>> = attrs
        .iter()
        .map(|col| {
            let mut f = HashMap::new();
            for vals in col {
                let set: BTreeSet<&str> = vals.iter().map(String::as_str).collect();
                for v in set {
                    *f.entry(v).or_insert(0) += 1;
                }
            }
            f
        })
        .collect();
    let mut row_tuples: Vec<Vec<Vec<Option<String>>>> = Vec::new();
    for row in 0..n {
        let mut tuples: Vec<Vec<Option<String>>> = vec![Vec::new()];
        for (a, col) in attrs.iter().enumerate() {
            let vals = &col[row];
            let choices: Vec<Option<String>> = if vals.is_empty() {
                vec![None]
            } else {
                match options.aggregation {
                    Aggregation::First => vec![Some(vals[0].clone())],
                    Aggregation::MostFrequent => {
                        let best = vals
                            .iter()
                            .max_by(|x, y| {
                                freq[a][x.as_str()]
                                    .cmp(&freq[a][y.as_str()])
                                    .then_with(|| y.cmp(x))
                            })
                            .unwrap();
                        vec![Some(best.clone())]
                    }
                    Aggregation::All => {
                        let set: BTreeSet<&String> = vals.iter().collect();
                        set.into_iter().map(|v| Some(v.clone())).collect()
                    }
                }
            };
            tuples = tuples
                .into_iter()
                .flat_map(|t| {
                    choices.iter().map(move |c| {
                        let mut t = t.clone();
                        t.push(c.clone());
                        t
                    })
                })
                .collect();
        }
        row_tuples.push(tuples);
    }
    let depth = attrs.len();
    let levels: Vec<usize> = if options.hierarchical {
        (0..depth).collect()
    } else {
        vec![depth - 1]
    };
    let mut groups = Vec::new();
    let mut index: HashMap<Vec<Option<String>>, usize> = HashMap::new();
    for &level in &levels {
        let mut sizes: BTreeMap<SortKey, (Key, usize)> = BTreeMap::new();
        for t in row_tuples.iter().flatten() {
            let prefix = t[..=level].to_vec();
            sizes.entry(sort_key(&prefix)).or_insert((prefix, 0)).1 += 1;
        }
        for (_, (k, size)) in sizes {
            let parent = (options.hierarchical && level > 0).then(|| index[&k[..level]]);
            index.insert(k.clone(), groups.len());
            groups.push(Group {
                key: k,
                parent,
                level: if options.hierarchical { level } else { 0 },
                is_leaf: level + 1 == depth,
                size,
            });
        }
    }
    let mut memberships: Vec<(u32, u32)> = Vec::new();
    for (r, ts) in row_tuples.iter().enumerate() {
        memberships.extend(ts.iter().map(|t| (r as u32, index[t] as u32)));
    }
    memberships.sort_unstable();
    Grouping {
        groups,
        memberships,
    }
}

#[test]
fn random_data_matches_the_documented_semantics_in_every_mode() {
    for (n_attrs, seed) in [(1, 1), (2, 2), (3, 3)] {
        let n = 500;
        let attrs = random_attributes(n, n_attrs, seed);
        for hierarchical in [false, true] {
            for aggregation in [
                Aggregation::MostFrequent,
                Aggregation::First,
                Aggregation::All,
            ] {
                let options = GroupingOptions {
                    hierarchical,
                    aggregation,
                };
                let got = group(&attrs, n, &options, &ctx()).unwrap();
                assert_eq!(got, reference(&attrs, n, &options), "{options:?} {n_attrs}");
            }
        }
    }
}

#[test]
fn group_ids_do_not_depend_on_row_order() {
    let n = 400;
    let attrs = random_attributes(n, 2, 7);
    // Reverse, then interleave: a permutation that changes which values are seen first.
    let perm: Vec<usize> = (0..n)
        .rev()
        .filter(|r| r % 2 == 0)
        .chain((0..n).filter(|r| r % 2 == 1))
        .collect();
    let permuted: Vec<Vec<Vec<String>>> = attrs
        .iter()
        .map(|col| perm.iter().map(|&r| col[r].clone()).collect())
        .collect();
    for options in [tree(Aggregation::All), flat(Aggregation::MostFrequent)] {
        let a = group(&attrs, n, &options, &ctx()).unwrap();
        let b = group(&permuted, n, &options, &ctx()).unwrap();
        assert_eq!(a.groups, b.groups);
        let mut mapped: Vec<(u32, u32)> = b
            .memberships
            .iter()
            .map(|&(r, g)| (perm[r as usize] as u32, g))
            .collect();
        mapped.sort_unstable();
        assert_eq!(a.memberships, mapped);
    }
}

#[test]
fn the_same_grouping_on_one_and_two_threads() {
    let attrs = random_attributes(1000, 2, 11);
    let options = tree(Aggregation::MostFrequent);
    let one = on_threads(1, || group(&attrs, 1000, &options, &ctx()).unwrap());
    let two = on_threads(2, || group(&attrs, 1000, &options, &ctx()).unwrap());
    assert_eq!(one, two);
}

/// `n` rows: attribute 0 cycles through 50 categories, attribute 1 through 7 brands, and
/// the brand of every row ≡ 3 (mod 10) is null.
fn million_rows(n: usize) -> Vec<Vec<Vec<String>>> {
    let categories: Vec<String> = (0..50).map(|i| format!("category-{i:02}")).collect();
    let brands: Vec<String> = (0..7).map(|i| format!("brand-{i}")).collect();
    vec![
        (0..n).map(|r| vec![categories[r % 50].clone()]).collect(),
        (0..n)
            .map(|r| {
                if r % 10 == 3 {
                    Vec::new()
                } else {
                    vec![brands[r % 7].clone()]
                }
            })
            .collect(),
    ]
}

#[test]
fn a_million_rows_by_two_attributes_group_in_one_pass() {
    let n = 1_000_000;
    let attrs = million_rows(n);
    let g = group(&attrs, n, &tree(Aggregation::MostFrequent), &ctx()).unwrap();
    assert_eq!(g.memberships.len(), n);
    let leaves: Vec<&Group> = g.groups.iter().filter(|gr| gr.is_leaf).collect();
    let top: Vec<&Group> = g.groups.iter().filter(|gr| gr.level == 0).collect();
    assert_eq!(top.len(), 50);
    // The pattern repeats every lcm(50, 7, 10) = 350 rows; its distinct tuples, counted
    // directly.
    let mut distinct = BTreeSet::new();
    for r in 0..350 {
        let brand = if r % 10 == 3 { None } else { Some(r % 7) };
        distinct.insert((r % 50, brand));
    }
    assert_eq!(leaves.len(), distinct.len());
    assert_eq!(top.iter().map(|gr| gr.size).sum::<usize>(), n);
    assert_eq!(leaves.iter().map(|gr| gr.size).sum::<usize>(), n);
}

#[test]
fn pre_cancelled_context_returns_cancelled() {
    let attrs = random_attributes(100, 2, 5);
    let got = group(&attrs, 100, &flat(Aggregation::First), &cancelled_context());
    assert_eq!(got, Err(GroupingError::Cancelled));
    let api: ApiError = GroupingError::Cancelled.into();
    assert_eq!(api.code, ErrorCode::Cancelled);
}

#[test]
fn cancelling_from_the_progress_stream_stops_the_run() {
    let n = 1_000_000;
    let attrs = million_rows(n);
    let (result, events) = fit_cancelled_at(
        |ev| ev.stage == "attribute_based:grouping" && ev.fraction > 0.0,
        |c| group(&attrs, n, &flat(Aggregation::MostFrequent), c),
    );
    assert_eq!(result, Err(GroupingError::Cancelled));
    assert!(events.iter().all(|e| e.stage == "attribute_based:grouping"));
    assert!(events.iter().all(|e| e.fraction < 1.0));
}

#[test]
fn rows_past_the_end_of_an_attribute_read_as_null() {
    let attrs = vec![column(&[&["a"], &["a"]]), column(&[&["x"]])];
    let g = group(&attrs, 3, &flat(Aggregation::First), &ctx()).unwrap();
    let keys: Vec<_> = g
        .groups
        .iter()
        .map(|gr| (gr.key.clone(), gr.size))
        .collect();
    assert_eq!(
        keys,
        vec![
            (key(&[Some("a"), Some("x")]), 1),
            (key(&[Some("a"), None]), 1),
            (key(&[None, None]), 1),
        ]
    );
}

#[test]
fn no_attributes_put_every_row_in_one_group() {
    let g = group(&[], 3, &tree(Aggregation::First), &ctx()).unwrap();
    assert_eq!(g.groups.len(), 1);
    assert_eq!(g.groups[0].size, 3);
    assert!(g.groups[0].key.is_empty());
    assert_eq!(g.memberships, vec![(0, 0), (1, 0), (2, 0)]);
    let empty = group(&[], 0, &flat(Aggregation::First), &ctx()).unwrap();
    assert!(empty.groups.is_empty() && empty.memberships.is_empty());
}

#[test]
fn aggregation_names_round_trip_and_unknown_names_are_none() {
    for a in [
        Aggregation::MostFrequent,
        Aggregation::First,
        Aggregation::All,
    ] {
        assert_eq!(Aggregation::parse(a.as_str()), Some(a));
    }
    assert_eq!(Aggregation::parse("mean"), None);
    assert_eq!(Aggregation::parse("First"), None);
}

#[test]
fn describe_names_unnamed_attributes_by_position() {
    let g = Group {
        key: key(&[Some("Electronics"), Some("Acme")]),
        parent: None,
        level: 0,
        is_leaf: true,
        size: 1,
    };
    assert_eq!(
        describe(&g, &["category".to_owned(), "brand".to_owned()]),
        "category=Electronics / brand=Acme"
    );
    assert_eq!(
        describe(&g, &["category".to_owned()]),
        "category=Electronics / #1=Acme"
    );
}

#[test]
fn more_rows_than_u32_ids_are_refused_before_any_work() {
    let attrs = vec![column(&[&["a"]])];
    let n_rows = u32::MAX as usize + 1;
    let err = group(&attrs, n_rows, &flat(Aggregation::First), &ctx()).unwrap_err();
    assert_eq!(
        err,
        GroupingError::TooLarge {
            what: "rows",
            max: u32::MAX as usize
        }
    );
    let api: ApiError = err.into();
    assert_eq!(api.code, ErrorCode::PayloadTooLarge);
    assert_eq!(api.field.as_deref(), Some("sample_size"));
}
