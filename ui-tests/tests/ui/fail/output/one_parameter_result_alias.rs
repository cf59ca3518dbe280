#[crudp::module]
pub trait Files {
    async fn read(&self, ctx: &crudp::Context, path: String) -> std::io::Result<Vec<u8>>;
}

fn main() {}
