// A function of two arguments takes them as a pair.
fn add(a: u32, b: u32) -> u32 {
    a + b
}

fn main() {
    multiproc::init();
    let mut p = multiproc::Process::new(add, (1u32, 2u32, 3u32));
    let _ = p.start();
}
