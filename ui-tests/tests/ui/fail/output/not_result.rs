#[crudp::module]
pub trait Todos {
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Option<String>;
}

fn main() {}
