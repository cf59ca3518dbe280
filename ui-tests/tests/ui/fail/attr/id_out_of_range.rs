#[crudp::module(id = 5_000_000_000)]
pub trait Todos {
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()>;
}

fn main() {}
