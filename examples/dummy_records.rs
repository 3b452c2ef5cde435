//! A task of no arguments submitted many times: `pool.apply_async(get_a_dummy_record, ())`.
//! Ports seed 004's "dummy dataset" program, which builds a table of fake people with `faker`
//! and `pandas`.
//!
//! ```python
//! N = 1_000_000
//! fake = Faker()
//!
//! def get_a_dummy_record():
//!     return [fake.name(), fake.city(), fake.license_plate(), fake.job()]
//!
//! if __name__ == '__main__':
//!     pool = Pool(os.cpu_count() - 1)
//!     results = []
//!     for _ in range(N):
//!         results.append(pool.apply_async(get_a_dummy_record))   # the seed has results(...)
//!     pool.close(); pool.join()
//!     data = [r.get() for r in results]
//!     df = pd.DataFrame(data=data)
//! ```
//!
//! Here the fake values are drawn from small lists, the table is a `Vec` of records, and
//! 100 000 records stand in for the million. A function of no arguments takes `()`, as
//! Python's `args=()`.
//!
//! Run: `cargo run --release --example dummy_records`

use std::collections::BTreeMap;

use multiproc::{AsyncResult, Error, Pool};
use rand::Rng;
use rand::seq::IndexedRandom;

const N: usize = 100_000;

const NAMES: &[&str] = &[
    "Ada Lovelace",
    "Alan Turing",
    "Grace Hopper",
    "Edsger Dijkstra",
];
const CITIES: &[&str] = &["Beijing", "Lagos", "Lima", "Oslo", "Osaka"];
const JOBS: &[&str] = &["engineer", "teacher", "nurse", "pilot", "baker"];

/// One fake person: name, city, licence plate, job.
fn get_a_dummy_record() -> Vec<String> {
    let mut rng = rand::rng();
    let pick = |list: &[&str], rng: &mut rand::rngs::ThreadRng| {
        list.choose(rng).expect("a non-empty list").to_string()
    };
    let plate = format!(
        "{}{}{}-{:03}",
        rng.random_range('A'..='Z'),
        rng.random_range('A'..='Z'),
        rng.random_range('A'..='Z'),
        rng.random_range(0..1000)
    );
    vec![
        pick(NAMES, &mut rng),
        pick(CITIES, &mut rng),
        plate,
        pick(JOBS, &mut rng),
    ]
}

fn main() -> Result<(), Error> {
    multiproc::init();
    let pool = Pool::new((multiproc::cpu_count() - 1).max(1))?;

    let results: Vec<AsyncResult<Vec<String>>> = (0..N)
        .map(|_| pool.apply_async(get_a_dummy_record, ()))
        .collect();
    pool.close();
    pool.join()?;
    let data = results
        .iter()
        .map(AsyncResult::get)
        .collect::<Result<Vec<_>, _>>()?;

    for record in &data[..3] {
        println!("{record:?}");
    }
    let mut per_city: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &data {
        *per_city.entry(&record[1]).or_default() += 1;
    }
    println!("{} records; people per city: {per_city:?}", data.len());

    assert_eq!(data.len(), N);
    for record in &data {
        assert_eq!(record.len(), 4);
        assert!(NAMES.contains(&record[0].as_str()));
        assert!(CITIES.contains(&record[1].as_str()));
        assert!(JOBS.contains(&record[3].as_str()));
    }
    // Every call ran anew: with 5 cities, 100 000 records cover them all.
    assert_eq!(per_city.len(), CITIES.len());
    Ok(())
}
