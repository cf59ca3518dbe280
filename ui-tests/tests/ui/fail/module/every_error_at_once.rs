// Every problem is reported in one pass, each where it is.
#[crudp::module(id = "seven")]
pub trait Todos {
    fn create(&self, ctx: &crudp::Context, title: String) -> Result<u64, ()>;
    async fn list(&self, ctx: &crudp::Context) -> Result<Vec<u64>, ()>;
    async fn delete(&self, id: u64) -> bool;
}

fn main() {}
