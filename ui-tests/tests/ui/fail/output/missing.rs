#[crudp::module]
pub trait Todos {
    async fn delete(&self, ctx: &crudp::Context, id: u64);
}

fn main() {}
