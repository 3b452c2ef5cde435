//! Python's custom manager objects:
//!
//! ```python
//! class Account:
//!     def __init__(self): self.balance, self.history = 0, []
//!     def deposit(self, amount): self.balance += amount; self.history.append(amount); return self.balance
//!
//! class BankManager(BaseManager): pass
//! BankManager.register("Account", Account)
//! ```
//!
//! Here any serde type is hosted with `m.host(value)`, no registration, and its methods are
//! plain `fn(&mut T, A) -> R`, run on the server under the object's lock: four processes and a
//! pool deposit into one account and lose nothing. A withdrawal that would overdraw panics
//! after it changed the balance; the call fails and the account is as it was before it.

use multiproc::{Manager, Pool, Process, Proxy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
    history: Vec<i64>,
}

impl Account {
    fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.history.push(amount);
        self.balance
    }

    fn withdraw(&mut self, amount: i64) -> i64 {
        self.balance -= amount;
        assert!(self.balance >= 0, "overdrawn by {}", -self.balance);
        self.history.push(-amount);
        self.balance
    }

    fn statement(&mut self, (): ()) -> String {
        format!("{} after {} operations", self.balance, self.history.len())
    }
}

fn client(account: Proxy<Account>, times: u32) {
    for _ in 0..times {
        account.call(Account::deposit, 1).unwrap();
    }
    let me = multiproc::current_process().name().to_string();
    println!("{me}: {}", account.call(Account::statement, ()).unwrap());
}

fn deposit_in_pool(account: Proxy<Account>, amount: i64) -> i64 {
    account.call(Account::deposit, amount).unwrap()
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let m = Manager::new()?;
    let account = m.host(Account::default())?;

    let mut ps: Vec<_> = (0..4)
        .map(|_| Process::new(client, (account.clone(), 250)))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &ps {
        p.join()?;
    }
    let pool = Pool::new(2)?;
    let args: Vec<_> = (1..=10).map(|x| (account.clone(), x)).collect();
    pool.starmap(deposit_in_pool, args)?;
    assert_eq!(account.get()?.balance, 1000 + 55);

    let overdraw = account.call(Account::withdraw, 5000);
    println!("withdraw 5000: {overdraw:?}");
    assert!(
        matches!(overdraw, Err(multiproc::Error::Manager(why)) if why.contains("overdrawn by 3945"))
    );
    let statement = account.call(Account::statement, ())?;
    println!("{statement}");
    assert_eq!(statement, "1055 after 1010 operations");
    m.shutdown()
}
