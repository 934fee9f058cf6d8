// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {IJobMarket} from "../interfaces/IJobMarket.sol";

/// @title CreditLedger
/// @notice The market's credits: balances deposited from the Credit token, the platform's accrued
/// fees, and what the market owes in all. Jobs move numbers between balances and escrows
/// (`_debit`, and `JobMarket`'s endings) and never transfer tokens, which keeps them cheap; only
/// deposits and withdrawals move tokens.
/// @dev Invariant (tested): `credit.balanceOf(this) == sum(balances) + sum(escrow of live jobs) +
/// accruedFees == _owed`, less any surplus that reached the market outside `deposit`.
abstract contract CreditLedger is IJobMarket, AccessControl {
    using SafeERC20 for IERC20;

    /// @inheritdoc IJobMarket
    IERC20 public immutable credit;
    /// @inheritdoc IJobMarket
    uint256 public accruedFees;
    mapping(address account => uint256) internal _balances;
    /// @dev Credits the market owes: sum of balances + live escrows + accrued fees, moved only
    /// by deposits and withdrawals. The token it holds above this is the sweepable surplus.
    uint256 internal _owed;

    constructor(IERC20 credit_) {
        credit = credit_;
    }

    /// @inheritdoc IJobMarket
    function deposit(uint256 amount) external {
        _deposit(amount);
    }

    /// @inheritdoc IJobMarket
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external {
        // A permit seen in the mempool can be front-run by anyone; the allowance it set still
        // serves this deposit, so a failed permit is not fatal (OpenZeppelin's advice).
        try IERC20Permit(address(credit)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(amount);
    }

    /// @inheritdoc IJobMarket
    function withdraw(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        uint256 balance = _balances[msg.sender];
        if (balance < amount) revert MarketInsufficientBalance(msg.sender, balance, amount);
        unchecked {
            _balances[msg.sender] = balance - amount;
            _owed -= amount; // the balance was part of it
        }
        emit Withdrawn(msg.sender, amount);
        credit.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IJobMarket
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @inheritdoc IJobMarket
    function withdrawFees(address to, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (amount == 0) revert MarketZeroAmount();
        uint256 fees = accruedFees;
        if (fees < amount) revert MarketInsufficientBalance(address(this), fees, amount);
        accruedFees = fees - amount;
        unchecked {
            _owed -= amount; // the fees were part of it
        }
        emit FeesWithdrawn(to, amount);
        credit.safeTransfer(to, amount);
    }

    /// @inheritdoc IJobMarket
    function sweepSurplus(address to) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 surplus = credit.balanceOf(address(this)) - _owed;
        // Nothing to sweep. A transfer that lands before this call only adds to what is swept,
        // whole, so no one can make a sweep fail or take less by moving the balance.
        // slither-disable-next-line incorrect-equality
        if (surplus == 0) revert MarketZeroAmount();
        emit SurplusSwept(to, surplus);
        credit.safeTransfer(to, surplus);
    }

    function _deposit(uint256 amount) private {
        if (amount == 0) revert MarketZeroAmount();
        _balances[msg.sender] += amount;
        _owed += amount;
        emit Deposited(msg.sender, amount);
        credit.safeTransferFrom(msg.sender, address(this), amount);
    }
}
