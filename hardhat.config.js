// Hardhat Network, a second local EVM node for the integration tests, started by
// src/metascheduler/devnet/hardhat.py (`hardhat node`). Forge builds the contracts: Hardhat
// compiles nothing here, and its own folders stay under var/hardhat, away from forge's cache/.
const accounts = Number(process.env.MS_HARDHAT_ACCOUNTS || "20");

module.exports = {
  networks: {
    hardhat: {
      // The EVM version foundry.toml compiles for.
      hardfork: "prague",
      chainId: 31337,
      // The development mnemonic anvil uses too, so the same well-known accounts exist on both.
      accounts: {
        mnemonic: "test test test test test test test test test test test junk",
        count: accounts,
        accountsBalance: "1000000000000000000000000",
      },
    },
  },
  paths: {
    sources: "./var/hardhat/sources",
    cache: "./var/hardhat/cache",
    artifacts: "./var/hardhat/artifacts",
  },
};
