// A borrowed argument cannot arrive in another process: the compiler's message is about
// lifetimes (see `Data`'s docs: use `String`).
fn shout(word: &str) -> String {
    word.to_uppercase()
}

fn main() {
    multiproc::init();
    let pool = multiproc::Pool::new(1).unwrap();
    let _ = pool.apply(shout, "hi");
}
