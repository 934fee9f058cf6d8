// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {Fixture} from "./utils/Fixture.sol";
import {IJobMarket, JobStatus, JobView, Prices, Terms} from "../src/interfaces/IJobMarket.sol";

/// @notice Credits: balances in the market (deposit, permit, withdraw), escrow at request,
/// top-ups, billing and the fee split when a job ends, and the admin's fee withdrawal.
contract JobMarketCreditsTest is Fixture {
    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    // ------------------------------------------------------------------ deposit / withdraw

    function test_deposit_movesCreditsIntoBalance() public {
        vm.prank(admin);
        credit.mint(alice, 7 * CREDIT);
        uint256 held = credit.balanceOf(address(market));
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.Deposited(alice, 7 * CREDIT);
        vm.prank(alice);
        market.deposit(7 * CREDIT);
        assertEq(market.balanceOf(alice), 10_007 * CREDIT);
        assertEq(credit.balanceOf(address(market)), held + 7 * CREDIT);
        assertEq(credit.balanceOf(alice), 0);
    }

    function test_deposit_revertsOnZero() public {
        vm.expectRevert(IJobMarket.MarketZeroAmount.selector);
        vm.prank(alice);
        market.deposit(0);
    }

    function test_deposit_revertsWithoutAllowance() public {
        vm.prank(admin);
        credit.mint(stranger, CREDIT);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, CREDIT)
        );
        vm.prank(stranger);
        market.deposit(CREDIT);
    }

    function test_deposit_revertsWithoutFunds() public {
        vm.prank(stranger);
        credit.approve(address(market), CREDIT);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, stranger, 0, CREDIT));
        vm.prank(stranger);
        market.deposit(CREDIT);
    }

    function test_withdraw_returnsCreditsToWallet() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.Withdrawn(alice, 3 * CREDIT);
        vm.prank(alice);
        market.withdraw(3 * CREDIT);
        assertEq(market.balanceOf(alice), 9_997 * CREDIT);
        assertEq(credit.balanceOf(alice), 3 * CREDIT);
    }

    function test_withdraw_revertsOnZero() public {
        vm.expectRevert(IJobMarket.MarketZeroAmount.selector);
        vm.prank(alice);
        market.withdraw(0);
    }

    function test_withdraw_revertsIfInsufficientBalance() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IJobMarket.MarketInsufficientBalance.selector, alice, 10_000 * CREDIT, 10_000 * CREDIT + 1
            )
        );
        vm.prank(alice);
        market.withdraw(10_000 * CREDIT + 1);
    }

    function test_withdraw_escrowIsNotWithdrawable() public {
        _request(alice, 10_000 * CREDIT);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.MarketInsufficientBalance.selector, alice, 0, 1));
        vm.prank(alice);
        market.withdraw(1);
    }

    function test_withdraw_providerEarnings() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        vm.prank(provA);
        market.withdraw(PRICE_A * 10);
        assertEq(credit.balanceOf(provA), PRICE_A * 10);
        assertEq(market.balanceOf(provA), 0);
    }

    // ------------------------------------------------------------------ depositWithPermit

    function _permit(uint256 pk, address owner, uint256 value, uint256 deadline)
        internal
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        bytes32 structHash =
            keccak256(abi.encode(PERMIT_TYPEHASH, owner, address(market), value, credit.nonces(owner), deadline));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", credit.DOMAIN_SEPARATOR(), structHash));
        (v, r, s) = vm.sign(pk, digest);
    }

    function test_depositWithPermit_depositsWithoutApproval() public {
        (address carol, uint256 pk) = makeAddrAndKey("carol");
        vm.prank(admin);
        credit.mint(carol, 50 * CREDIT);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(pk, carol, 50 * CREDIT, deadline);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.Deposited(carol, 50 * CREDIT);
        vm.prank(carol);
        market.depositWithPermit(50 * CREDIT, deadline, v, r, s);
        assertEq(market.balanceOf(carol), 50 * CREDIT);
        assertEq(credit.balanceOf(carol), 0);
        assertEq(credit.nonces(carol), 1);
        assertEq(credit.allowance(carol, address(market)), 0);
    }

    function test_depositWithPermit_frontRunPermitStillDeposits() public {
        (address carol, uint256 pk) = makeAddrAndKey("carol");
        vm.prank(admin);
        credit.mint(carol, 50 * CREDIT);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(pk, carol, 50 * CREDIT, deadline);
        // Someone sees the permit in the mempool and submits it first.
        vm.prank(stranger);
        credit.permit(carol, address(market), 50 * CREDIT, deadline, v, r, s);
        vm.prank(carol);
        market.depositWithPermit(50 * CREDIT, deadline, v, r, s);
        assertEq(market.balanceOf(carol), 50 * CREDIT);
    }

    function test_depositWithPermit_revertsWithBadSignature() public {
        (address carol,) = makeAddrAndKey("carol");
        (, uint256 otherPk) = makeAddrAndKey("mallory");
        vm.prank(admin);
        credit.mint(carol, 50 * CREDIT);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(otherPk, carol, 50 * CREDIT, deadline);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 50 * CREDIT)
        );
        vm.prank(carol);
        market.depositWithPermit(50 * CREDIT, deadline, v, r, s);
    }

    function test_depositWithPermit_revertsAfterDeadline() public {
        (address carol, uint256 pk) = makeAddrAndKey("carol");
        vm.prank(admin);
        credit.mint(carol, 50 * CREDIT);
        uint256 deadline = block.timestamp - 1;
        (uint8 v, bytes32 r, bytes32 s) = _permit(pk, carol, 50 * CREDIT, deadline);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 50 * CREDIT)
        );
        vm.prank(carol);
        market.depositWithPermit(50 * CREDIT, deadline, v, r, s);
    }

    function test_depositWithPermit_cannotBeUsedBySomeoneElse() public {
        (address carol, uint256 pk) = makeAddrAndKey("carol");
        vm.prank(admin);
        credit.mint(carol, 50 * CREDIT);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _permit(pk, carol, 50 * CREDIT, deadline);
        // The permit names carol as owner: a stranger replaying it deposits nothing of carol's.
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 50 * CREDIT)
        );
        vm.prank(stranger);
        market.depositWithPermit(50 * CREDIT, deadline, v, r, s);
        assertEq(credit.balanceOf(carol), 50 * CREDIT);
    }

    // ------------------------------------------------------------------ requestJob

    function test_request_locksEscrowFromBalance() public {
        (uint256 id, Terms memory t) = _request(alice, 5 * CREDIT);
        assertEq(id, 1);
        assertEq(market.jobCount(), 1);
        assertEq(market.balanceOf(alice), 9_995 * CREDIT);
        JobView memory j = market.getJob(id);
        assertEq(j.customer, alice);
        assertEq(j.provider, address(0));
        assertEq(uint8(j.status), uint8(JobStatus.PENDING));
        assertEq(j.since, 0);
        assertEq(j.escrow, 5 * CREDIT);
        assertEq(j.termsTag, _tag(t));
        (uint256 id2,) = _request(bob, 1);
        assertEq(id2, 2);
    }

    function test_request_revertsOnZeroCpus() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidResources.selector, 0, 2, 4096));
        vm.prank(alice);
        market.requestJob(0, 2, 4096, CREDIT, CREDIT, spec);
    }

    function test_request_revertsOnEmptySpec() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidSpecLength.selector, 0, 16_384));
        vm.prank(alice);
        market.requestJob(1, 0, 0, CREDIT, CREDIT, "");
    }

    function test_request_revertsOnOversizedSpec() public {
        bytes memory big = new bytes(16_385);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidSpecLength.selector, 16_385, 16_384));
        vm.prank(alice);
        market.requestJob(1, 0, 0, CREDIT, CREDIT, big);
    }

    function test_request_acceptsLargestSpec() public {
        bytes memory big = new bytes(16_384);
        big[0] = "{";
        vm.prank(alice);
        uint256 id = market.requestJob(1, 0, 0, CREDIT, CREDIT, big);
        assertEq(market.getJob(id).termsTag, bytes16(keccak256(abi.encode(Terms(keccak256(big), 1, 0, 0, CREDIT)))));
    }

    function test_request_revertsOnZeroEscrow() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidAmount.selector, 0, type(uint96).max));
        vm.prank(alice);
        market.requestJob(1, 0, 0, CREDIT, 0, spec);
    }

    function test_request_revertsOnOversizedEscrow() public {
        uint256 tooMuch = uint256(type(uint96).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidAmount.selector, tooMuch, type(uint96).max));
        vm.prank(alice);
        market.requestJob(1, 0, 0, CREDIT, tooMuch, spec);
    }

    function test_request_revertsOnZeroMaxPrice() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidAmount.selector, 0, type(uint40).max));
        vm.prank(alice);
        market.requestJob(1, 0, 0, 0, CREDIT, spec);
    }

    function test_request_revertsOnOversizedMaxPrice() public {
        uint256 tooMuch = uint256(type(uint40).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidAmount.selector, tooMuch, type(uint40).max));
        vm.prank(alice);
        market.requestJob(1, 0, 0, tooMuch, CREDIT, spec);
    }

    function test_request_acceptsLargestEscrowAndMaxPrice() public {
        _fund(stranger, type(uint96).max);
        vm.prank(stranger);
        uint256 id = market.requestJob(1, 0, 0, type(uint40).max, type(uint96).max, spec);
        assertEq(market.getJob(id).escrow, type(uint96).max);
    }

    function test_request_revertsIfInsufficientBalance() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IJobMarket.MarketInsufficientBalance.selector, alice, 10_000 * CREDIT, 10_000 * CREDIT + 1
            )
        );
        vm.prank(alice);
        market.requestJob(1, 0, 0, CREDIT, 10_000 * CREDIT + 1, spec);
    }

    function test_request_revertsWhenPaused() public {
        vm.prank(admin);
        market.pause();
        vm.expectRevert(IJobMarket.MarketRequestsPaused.selector);
        vm.prank(alice);
        market.requestJob(1, 0, 0, CREDIT, CREDIT, spec);
    }

    // ------------------------------------------------------------------ topUp

    function test_topUp_addsToEscrowFromBalance() public {
        (uint256 id,) = _request(alice, 5 * CREDIT);
        vm.prank(alice);
        market.topUp(id, 2 * CREDIT);
        assertEq(market.getJob(id).escrow, 7 * CREDIT);
        assertEq(market.balanceOf(alice), 9_993 * CREDIT);
    }

    function test_topUp_revertsOnZero() public {
        (uint256 id,) = _request(alice, 5 * CREDIT);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.JobInvalidAmount.selector, 0, type(uint96).max - 5 * CREDIT)
        );
        vm.prank(alice);
        market.topUp(id, 0);
    }

    function test_topUp_revertsAboveEscrowCapacity() public {
        (uint256 id,) = _request(alice, 5 * CREDIT);
        uint256 room = type(uint96).max - 5 * CREDIT;
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidAmount.selector, room + 1, room));
        vm.prank(alice);
        market.topUp(id, room + 1);
    }

    /// @dev An amount so large that escrow + amount overflows uint256 gets the same custom error.
    function test_topUp_revertsOnHugeAmountWithCustomError() public {
        (uint256 id,) = _request(alice, 5 * CREDIT);
        uint256 room = type(uint96).max - 5 * CREDIT;
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidAmount.selector, type(uint256).max, room));
        vm.prank(alice);
        market.topUp(id, type(uint256).max);
    }

    function test_topUp_revertsIfInsufficientBalance() public {
        (uint256 id,) = _request(alice, 5 * CREDIT);
        vm.expectRevert(
            abi.encodeWithSelector(
                IJobMarket.MarketInsufficientBalance.selector, alice, 9_995 * CREDIT, 9_996 * CREDIT
            )
        );
        vm.prank(alice);
        market.topUp(id, 9_996 * CREDIT);
    }

    function test_topUp_revertsIfNotCustomer() public {
        (uint256 id,) = _request(alice, 5 * CREDIT);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotCustomer.selector, id, bob, alice));
        vm.prank(bob);
        market.topUp(id, CREDIT);
    }

    function test_topUp_allowedWhilePaused() public {
        (uint256 id,) = _request(alice, 5 * CREDIT);
        vm.prank(admin);
        market.pause();
        vm.prank(alice);
        market.topUp(id, CREDIT);
        vm.prank(alice);
        market.cancelJob(id);
        vm.prank(alice);
        market.withdraw(CREDIT);
    }

    // ------------------------------------------------------------------ billing when a job ends

    function test_complete_billsPriceTimesElapsed() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.warp(block.timestamp + 61); // 4,800 * 61 / 60 = 4,880
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(provA), 4_880);
        assertEq(market.balanceOf(alice), 10_000 * CREDIT - 4_880);
    }

    function test_complete_roundsDownInCustomersFavour() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.warp(block.timestamp + 7); // 4,800 * 7 / 60 = 560 exactly; try a price that does not divide
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(provA), 560);

        address odd = makeAddr("odd");
        _provider(odd, _prices(7, 0, 0)); // 4 CPUs: 28/min
        (uint256 id2, Terms memory t) = _request(alice, 5 * CREDIT);
        _place(id2, t, odd);
        vm.startPrank(odd);
        market.acceptJob(id2);
        market.startJob(id2, block.timestamp);
        vm.warp(block.timestamp + 13); // 28 * 13 / 60 = 6.07 -> 6
        market.completeJob(id2, 0, bytes32(0), block.timestamp);
        vm.stopPrank();
        assertEq(market.balanceOf(odd), 6);
    }

    function test_complete_billingCappedAtEscrow() public {
        (uint256 id,) = _running(alice, SMALL_ESCROW);
        vm.warp(block.timestamp + 10 days);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.FINISHED, SMALL_ESCROW, 0, 0, 0, bytes32(0), block.timestamp);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(alice), 10_000 * CREDIT - SMALL_ESCROW);
    }

    function test_complete_splitsFeeFixedAtPlacement() public {
        vm.prank(admin);
        market.setFee(500); // 5%
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.prank(admin);
        market.setFee(2_000); // changed later: this job keeps 5%
        assertEq(market.getJob(id).feeBps, 500);
        vm.warp(block.timestamp + 600);
        uint256 cost = PRICE_A * 10; // 48,000
        uint256 fee = cost * 500 / 10_000; // 2,400
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.FINISHED, cost - fee, fee, 5 * CREDIT - cost, 0, bytes32(0), block.timestamp);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.accruedFees(), fee);
        assertEq(market.balanceOf(provA), cost - fee);
        assertEq(market.balanceOf(alice), 10_000 * CREDIT - cost);
    }

    function test_complete_feeZeroIfPlacedBeforeFeeSet() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.prank(admin);
        market.setFee(1_000);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.accruedFees(), 0);
        assertEq(market.balanceOf(provA), PRICE_A * 10);
    }

    function test_reclaim_dropsFeeAndPriceSoReplacementUsesCurrentFee() public {
        vm.prank(admin);
        market.setFee(500);
        (uint256 id, Terms memory t) = _request(alice, 5 * CREDIT);
        _place(id, t, provA);
        vm.prank(provA);
        market.refuseJob(id, "busy");
        vm.prank(admin);
        market.setFee(100);
        _place(id, t, provB);
        JobView memory j = market.getJob(id);
        assertEq(j.feeBps, 100);
        assertEq(j.pricePerMinute, 4 * 2_000 + 800);
    }

    function test_cancelRunning_takesFeeFromBilledPart() public {
        vm.prank(admin);
        market.setFee(2_000);
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.warp(block.timestamp + 120);
        uint256 cost = PRICE_A * 2;
        vm.prank(alice);
        market.cancelJob(id);
        assertEq(market.accruedFees(), cost / 5);
        assertEq(market.balanceOf(provA), cost - cost / 5);
    }

    function test_expire_takesFeeFromEscrow() public {
        vm.prank(admin);
        market.setFee(1_000);
        (uint256 id,) = _running(alice, SMALL_ESCROW);
        vm.warp(market.fundedUntil(id));
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(
            id, JobStatus.RUNNING, JobStatus.OUT_OF_CREDITS, SMALL_ESCROW * 9 / 10, SMALL_ESCROW / 10, 0, -1
        , bytes32(0), block.timestamp);
        market.expireJobs(_ids(id));
    }

    // ------------------------------------------------------------------ fees

    function test_withdrawFees_movesAccruedFeesToWallet() public {
        vm.prank(admin);
        market.setFee(1_000);
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        uint256 fees = market.accruedFees();
        assertEq(fees, 4_800);
        address treasury = makeAddr("treasury");
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.FeesWithdrawn(treasury, 4_000);
        vm.prank(admin);
        market.withdrawFees(treasury, 4_000);
        assertEq(credit.balanceOf(treasury), 4_000);
        assertEq(market.accruedFees(), 800);

        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.MarketInsufficientBalance.selector, address(market), 800, 801)
        );
        vm.prank(admin);
        market.withdrawFees(treasury, 801);
        vm.expectRevert(IJobMarket.MarketZeroAmount.selector);
        vm.prank(admin);
        market.withdrawFees(treasury, 0);
    }

    function test_withdrawFees_revertsIfNotAdmin() public {
        bytes32 role = market.DEFAULT_ADMIN_ROLE();
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, oracle, role));
        vm.prank(oracle);
        market.withdrawFees(oracle, 1);
    }

    // ------------------------------------------------------------------ conservation, by hand

    function test_lifecycle_conservesCredits() public {
        vm.prank(admin);
        market.setFee(750);
        uint256 held = credit.balanceOf(address(market));
        (uint256 a,) = _running(alice, 5 * CREDIT);
        (uint256 b,) = _running(bob, SMALL_ESCROW);
        (uint256 c,) = _request(alice, CREDIT);
        vm.warp(block.timestamp + 1_300); // past b's fundedUntil (1,250 s)
        vm.prank(provA);
        market.completeJob(a, 3, bytes32(0), block.timestamp);
        assertEq(market.expireJobs(_ids(b)), 1);
        assertEq(credit.balanceOf(address(market)), held);
        uint256 sum = market.balanceOf(alice) + market.balanceOf(bob) + market.balanceOf(provA)
            + market.balanceOf(provB) + market.getJob(c).escrow + market.accruedFees();
        assertEq(sum, held);
    }

    function _prices(uint40 cpu, uint40 gpu, uint40 gb) internal pure returns (Prices memory) {
        return Prices(cpu, gpu, gb);
    }
}
