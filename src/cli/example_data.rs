//! A small, realistic example collection: Gaussian clusters in an embedding space, a
//! `category` attribute, a `text` per document (words typical of its category, so that
//! labelling has something to find) and a nested `metadata` struct, written as Parquet.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(clap::Args)]
pub struct ExampleArgs {
    /// Where to write the Parquet file.
    #[arg(long, default_value = "example.parquet")]
    out: PathBuf,
    #[arg(long, default_value_t = 300)]
    documents: usize,
    #[arg(long, default_value_t = 16)]
    dimension: usize,
    #[arg(long, default_value_t = 3)]
    clusters: usize,
    /// Prefix of the document ids (`doc_0001`, ...).
    #[arg(long, default_value = "doc_")]
    id_prefix: String,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Name of the vector column.
    #[arg(long, default_value = "embedding")]
    vector_name: String,
}

const CATEGORIES: [&str; 5] = ["electronics", "books", "garden", "toys", "music"];
const STATUSES: [&str; 3] = ["active", "archived", "draft"];
/// Words typical of each category, and filler every text shares.
const CATEGORY_WORDS: [[&str; 4]; 5] = [
    ["battery", "charger", "screen", "wireless"],
    ["novel", "author", "chapter", "paperback"],
    ["soil", "seeds", "watering", "compost"],
    ["puzzle", "lego", "doll", "playset"],
    ["vinyl", "guitar", "album", "concert"],
];
const FILLER: [&str; 6] = ["great", "value", "would", "recommend", "fast", "delivery"];

/// A short review: two words of the category, two of filler.
fn review(rng: &mut ChaCha8Rng, category: usize) -> String {
    let words = &CATEGORY_WORDS[category % CATEGORY_WORDS.len()];
    let w = |rng: &mut ChaCha8Rng| words[rng.random_range(0..words.len())];
    let f = |rng: &mut ChaCha8Rng| FILLER[rng.random_range(0..FILLER.len())];
    format!("{} {} {} {}", f(rng), w(rng), f(rng), w(rng))
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    // Box–Muller: keeps the example generator free of another dependency.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

pub fn write(args: &ExampleArgs) -> Result<(), String> {
    if args.documents == 0 || args.dimension == 0 || args.clusters == 0 {
        return Err("--documents, --dimension and --clusters must be at least 1".into());
    }
    let dim = i32::try_from(args.dimension).map_err(|_| "--dimension is too large")?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let centres: Vec<Vec<f32>> = (0..args.clusters)
        .map(|_| {
            (0..args.dimension)
                .map(|_| normal(&mut rng) * 4.0)
                .collect()
        })
        .collect();
    let width = args.documents.to_string().len().max(4);
    let mut ids = StringBuilder::new();
    let mut vectors = FixedSizeListBuilder::new(Float32Builder::new(), dim)
        .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
    let mut categories = StringBuilder::new();
    let mut texts = StringBuilder::new();
    // Its own stream, so that the vectors and attributes are those of earlier versions.
    let mut text_rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x7e57);
    let mut statuses = Vec::with_capacity(args.documents);
    let mut priorities = Vec::with_capacity(args.documents);
    for i in 0..args.documents {
        let c = i % args.clusters;
        ids.append_value(format!("{}{:0width$}", args.id_prefix, i + 1));
        for &x in &centres[c] {
            vectors.values().append_value(x + normal(&mut rng) * 0.5);
        }
        vectors.append(true);
        categories.append_value(CATEGORIES[c % CATEGORIES.len()]);
        texts.append_value(review(&mut text_rng, c));
        statuses.push(STATUSES[rng.random_range(0..STATUSES.len())]);
        priorities.push(rng.random_range(1..=3i64));
    }
    let metadata_fields = Fields::from(vec![
        Field::new("status", DataType::Utf8, true),
        Field::new("priority", DataType::Int64, true),
    ]);
    let metadata = StructArray::new(
        metadata_fields.clone(),
        vec![
            Arc::new(StringArray::from(statuses)) as ArrayRef,
            Arc::new(Int64Array::from(priorities)) as ArrayRef,
        ],
        None,
    );
    let vectors = vectors.finish();
    let schema = Arc::new(Schema::new(vec![
        Field::new("document_id", DataType::Utf8, false),
        Field::new(&args.vector_name, vectors.data_type().clone(), false),
        Field::new("category", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("metadata", DataType::Struct(metadata_fields), true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(ids.finish()),
            Arc::new(vectors),
            Arc::new(categories.finish()),
            Arc::new(texts.finish()),
            Arc::new(metadata),
        ],
    )
    .map_err(|e| format!("building the example batch: {e}"))?;
    let file = File::create(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} documents ({} clusters, dimension {}) to {}",
        args.documents,
        args.clusters,
        args.dimension,
        args.out.display()
    );
    Ok(())
}
