#[crudp::module]
pub trait Todos {
    async fn create(ctx: &crudp::Context, title: String) -> Result<u64, ()>;
}

fn main() {}
