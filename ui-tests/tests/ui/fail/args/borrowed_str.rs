#[crudp::module]
pub trait Todos {
    async fn create(&self, ctx: &crudp::Context, title: &str) -> Result<u64, ()>;
}

fn main() {}
