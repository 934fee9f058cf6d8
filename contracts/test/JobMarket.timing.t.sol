// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Fixture} from "./utils/Fixture.sol";
import {IJobMarket, JobStatus, ProviderAction, ProviderStep, Terms} from "../src/interfaces/IJobMarket.sol";

/// @notice Compute delivered by timing: a START carries the backend's start and a COMPLETE its end,
/// so that a job the provider reports late (START and COMPLETE in one batch, after the agent's
/// round was delayed) is billed its run. Each reported time is clamped, never refused: a start
/// to between the acceptance and the block, an end to between the start and the block.
contract JobMarketTimingTest is Fixture {
    uint256 internal constant ESCROW = 5 * CREDIT;

    /// @dev A job SCHEDULED on provA, accepted now.
    function _scheduled() internal returns (uint256 id) {
        Terms memory t;
        (id, t) = _request(alice, ESCROW);
        _place(id, t, provA);
        vm.prank(provA);
        market.acceptJob(id);
    }

    function _batch(uint256 id, uint256 startedAt, uint256 endedAt) internal {
        ProviderStep[] memory steps = new ProviderStep[](2);
        steps[0] = ProviderStep(id, ProviderAction.START, 0, bytes32(0), startedAt);
        steps[1] = ProviderStep(id, ProviderAction.COMPLETE, 0, bytes32(0), endedAt);
        vm.prank(provA);
        assertEq(market.providerBatch(steps), 2);
    }

    /// @dev The defect this closes: a 30-minute run reported START and COMPLETE in one block
    /// was billed 0 when metering started at the START's block.
    function test_startAndCompleteInOneBlock_billTheBackendsRun() public {
        uint256 id = _scheduled();
        uint256 accepted = block.timestamp;
        uint256 held = market.balanceOf(alice);
        vm.warp(accepted + 1_900);
        _batch(id, accepted + 40, accepted + 40 + 1_800);
        uint256 cost = PRICE_A * 1_800 / 60;
        assertEq(market.balanceOf(provA), cost, "provider paid the 30 minutes the backend ran");
        assertEq(market.balanceOf(alice) - held, ESCROW - cost, "customer refunded the rest");
    }

    function test_start_recordsTheBackendsStartAndEmitsIt() public {
        uint256 id = _scheduled();
        uint256 accepted = block.timestamp;
        vm.warp(accepted + 100);
        vm.expectEmit(address(market));
        emit IJobMarket.JobStatusChanged(id, JobStatus.SCHEDULED, JobStatus.RUNNING, accepted + 30);
        vm.prank(provA);
        market.startJob(id, accepted + 30);
        assertEq(market.getJob(id).since, accepted + 30);
        assertEq(market.fundedUntil(id), accepted + 30 + (ESCROW * 60 + PRICE_A - 1) / PRICE_A);
    }

    function test_start_beforeTheAcceptance_isClampedToIt() public {
        uint256 id = _scheduled();
        uint256 accepted = block.timestamp;
        vm.warp(accepted + 100);
        vm.prank(provA);
        market.startJob(id, accepted - 500);
        assertEq(market.getJob(id).since, accepted, "no metering before the job was this provider's");
    }

    /// @dev A provider whose clock runs ahead of the chain's is metered from the block, not refused.
    function test_start_afterTheBlock_isClampedToTheBlock() public {
        uint256 id = _scheduled();
        vm.warp(block.timestamp + 100);
        vm.prank(provA);
        market.startJob(id, block.timestamp + 3_600);
        assertEq(market.getJob(id).since, block.timestamp);
        assertEq(uint8(_status(id)), uint8(JobStatus.RUNNING));
    }

    function test_complete_billsUpToTheBackendsEnd() public {
        (uint256 id,) = _running(alice, ESCROW);
        uint256 started = block.timestamp;
        vm.warp(started + 600);
        vm.expectEmit(address(market));
        uint256 cost = PRICE_A * 120 / 60;
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.FINISHED, cost, 0, ESCROW - cost, 0, 0, started + 120);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), started + 120);
    }

    function test_complete_beforeTheStart_billsNothing() public {
        (uint256 id,) = _running(alice, ESCROW);
        uint256 held = market.balanceOf(alice);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), 1);
        assertEq(market.balanceOf(provA), 0);
        assertEq(market.balanceOf(alice) - held, ESCROW);
    }

    /// @dev A clock ahead of the chain's, or "now" for an unknown end: billed up to the block.
    function test_complete_afterTheBlock_billsUpToTheBlock() public {
        (uint256 id,) = _running(alice, ESCROW);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), type(uint256).max);
        assertEq(market.balanceOf(provA), PRICE_A * 600 / 60);
    }

    /// @dev Accepted and started in one batch: the start is bounded by that acceptance, now.
    function test_acceptAndStartInOneBatch_meterFromTheBlock() public {
        (uint256 id, Terms memory t) = _request(alice, ESCROW);
        _place(id, t, provA);
        vm.warp(block.timestamp + 300);
        ProviderStep[] memory steps = new ProviderStep[](2);
        steps[0] = ProviderStep(id, ProviderAction.ACCEPT, 0, bytes32(0), 0);
        steps[1] = ProviderStep(id, ProviderAction.START, 0, bytes32(0), block.timestamp - 200);
        vm.prank(provA);
        market.providerBatch(steps);
        assertEq(market.getJob(id).since, block.timestamp);
    }

    // ------------------------------------------------------------ top-ups after the escrow ran out

    /// @dev The defect this closes: a job that ran 10 s past its funded time, topped up by 1 s of
    /// price just before the agent's expiry, then completed, billed the escrow plus that 1 s for
    /// the 10 s it ran past it. A top-up of a job whose escrow is spent is now refused: the job is
    /// expirable, and its provider is paid the escrow, all the customer funded.
    function test_topUp_afterTheEscrowIsSpent_isRefused() public {
        (uint256 id,) = _running(alice, ESCROW);
        uint256 until = market.fundedUntil(id);
        vm.warp(until + 10);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobEscrowSpent.selector, id, until));
        vm.prank(alice);
        market.topUp(id, PRICE_A / 60);
        assertEq(market.getJob(id).escrow, ESCROW, "nothing added");
        assertEq(market.expireJobs(_ids(id)), 1);
        assertEq(uint8(_status(id)), uint8(JobStatus.OUT_OF_CREDITS));
        assertEq(market.balanceOf(provA), ESCROW, "provider paid all the customer funded");
    }

    /// @dev The bound is the funded time itself: the second OUT_OF_CREDITS becomes possible is the
    /// first a top-up is refused; the second before, it still extends the run.
    function test_topUp_untilTheFundedTime_extendsTheRun() public {
        (uint256 id,) = _running(alice, ESCROW);
        uint256 until = market.fundedUntil(id);
        vm.warp(until);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobEscrowSpent.selector, id, until));
        vm.prank(alice);
        market.topUp(id, CREDIT);
        vm.warp(until - 1);
        vm.prank(alice);
        market.topUp(id, CREDIT);
        assertGt(market.fundedUntil(id), until);
    }

    /// @dev A top-up after the escrow ran out cannot buy the time past it: a completion bills
    /// price x the run, as far as the escrow covers it.
    function test_topUp_beforeTheFundedTime_paysForTheRun() public {
        (uint256 id,) = _running(alice, ESCROW);
        uint256 started = block.timestamp;
        uint256 until = market.fundedUntil(id);
        vm.warp(until - 1);
        vm.prank(alice);
        market.topUp(id, CREDIT);
        vm.warp(until + 10);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(provA), PRICE_A * (until + 10 - started) / 60, "every second ran is paid");
    }
}
