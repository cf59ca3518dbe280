#[crudp::module]
pub trait Todos {
    async fn create<T: serde::Serialize>(&self, ctx: &crudp::Context, item: T) -> Result<u64, ()>;
}

fn main() {}
