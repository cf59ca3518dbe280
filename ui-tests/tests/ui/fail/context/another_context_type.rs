mod app {
    pub struct Context;
}

#[crudp::module]
pub trait Todos {
    async fn read(&self, ctx: &app::Context, id: u64) -> Result<String, ()>;
}

fn main() {}
