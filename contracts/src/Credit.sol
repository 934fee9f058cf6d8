// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title Credit
/// @notice The grid's unit of payment: an ERC-20 with EIP-2612 permit and 6 decimals
/// (1 credit = 1,000,000 units). Minted by holders of MINTER_ROLE; on a local devnet anyone may
/// draw from the faucet.
contract Credit is ERC20, ERC20Permit, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    /// @notice What one faucet call mints: 1,000 credits.
    uint256 public constant FAUCET_AMOUNT = 1_000 * 10 ** 6;

    /// @notice The faucet is for local devnets only (chain ids 31337 and 1337).
    error CreditFaucetDisabled(uint256 chainId);

    constructor(address admin) ERC20("metascheduler credit", "MSC") ERC20Permit("metascheduler credit") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Minter: creates `amount` credits in `to`'s wallet.
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }

    /// @notice Devnet only: mints FAUCET_AMOUNT credits to the caller.
    function faucet() external {
        if (block.chainid != 31337 && block.chainid != 1337) revert CreditFaucetDisabled(block.chainid);
        _mint(msg.sender, FAUCET_AMOUNT);
    }
}
