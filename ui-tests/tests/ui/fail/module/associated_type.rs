#[crudp::module]
pub trait Todos {
    type Item;
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()>;
}

fn main() {}
