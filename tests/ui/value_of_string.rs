// Shared values hold plain numbers, `bool` or `char`.
fn main() {
    multiproc::init();
    let _ = multiproc::Value::new(String::from("text"));
}
