// A result type without serde cannot come back from a worker.
struct Report {
    _lines: u32,
}

fn count(n: u32) -> Report {
    Report { _lines: n }
}

fn main() {
    multiproc::init();
    let pool = multiproc::Pool::new(1).unwrap();
    let _ = pool.apply(count, 3);
}
