// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Fixture} from "./utils/Fixture.sol";
import {IJobMarket, JobStatus, JobView, Placement, Prices, ProviderStatus, Terms} from "../src/interfaces/IJobMarket.sol";

/// @notice The state machine of docs/state-machine.md, table-driven: every job action, by every role, from
/// every status, either makes exactly the documented transition or reverts (or, in a batch, is
/// skipped) with the exact custom error and its arguments, leaving the job untouched; and again
/// with the job's provider banned once the job got there.
contract JobMarketTransitionsTest is Fixture {
    enum Action {
        PLACE,
        ACCEPT,
        START,
        COMPLETE,
        REFUSE,
        CANCEL,
        TOP_UP,
        RECLAIM,
        FAIL,
        EXPIRE
    }

    uint256 internal constant N_STATUSES = 8;

    function _callers() internal view returns (address[7] memory) {
        return [admin, oracle, provA, provB, alice, bob, stranger];
    }

    // ------------------------------------------------------------------ the table

    /// @dev What `caller` doing `a` to job `id` (in `from`, placed on provA unless PENDING,
    /// customer alice, every timeout run out, escrow spent; provA banned once the job reached
    /// `from` if `banned`) must give: the error it fails with (empty on success), whether it
    /// reverts the whole call (true for single calls and for a batch's caller check; false for an
    /// item a batch skips), and the status it leads to.
    function _model(Action a, address caller, uint256 id, JobStatus from, bool banned)
        internal
        view
        returns (bytes memory err, bool whole, JobStatus to)
    {
        address assigned = from == JobStatus.PENDING ? address(0) : provA;
        whole = true;
        to = from;
        if (a == Action.PLACE) {
            if (caller != oracle) return (_notOracle(caller), true, from);
            if (from != JobStatus.PENDING) return (_unexpected(id, from, _bit(JobStatus.PENDING)), true, from);
            if (banned) {
                return (
                    abi.encodeWithSelector(IJobMarket.ProviderNotApproved.selector, provA, ProviderStatus.BANNED),
                    true,
                    from
                );
            }
            return ("", true, JobStatus.META_SCHEDULED);
        }
        if (a == Action.ACCEPT || a == Action.START || a == Action.COMPLETE || a == Action.REFUSE) {
            if (caller != assigned) {
                return (abi.encodeWithSelector(IJobMarket.JobNotAssignedProvider.selector, id, caller, assigned), true, from);
            }
            (bytes32 mask, JobStatus next) = a == Action.ACCEPT
                ? (_bit(JobStatus.META_SCHEDULED), JobStatus.SCHEDULED)
                : a == Action.START
                    ? (_bit(JobStatus.SCHEDULED), JobStatus.RUNNING)
                    : a == Action.COMPLETE ? (_bit(JobStatus.RUNNING), JobStatus.FINISHED) : (PLACED, JobStatus.PENDING);
            if (mask & _bit(from) == 0) return (_unexpected(id, from, mask), true, from);
            // A ban stops new work only: a job accepted before it may still start, run and end.
            if (banned && a == Action.ACCEPT) {
                return (abi.encodeWithSelector(IJobMarket.ProviderBanned.selector, provA), true, from);
            }
            return ("", true, next);
        }
        if (a == Action.CANCEL || a == Action.TOP_UP) {
            if (_isTerminal(from)) return (_unexpected(id, from, LIVE), true, from);
            if (caller != alice) {
                return (abi.encodeWithSelector(IJobMarket.JobNotCustomer.selector, id, caller, alice), true, from);
            }
            if (a == Action.TOP_UP && from == JobStatus.RUNNING) {
                // Its escrow spent, a running job may only end: a top-up would buy its run past it.
                return (abi.encodeWithSelector(IJobMarket.JobEscrowSpent.selector, id, market.fundedUntil(id)), true, from);
            }
            return ("", true, a == Action.CANCEL ? JobStatus.CANCELLED : from);
        }
        // The batches: a caller check reverts the whole call, an item's error is skipped.
        if (a != Action.EXPIRE && caller != oracle) return (_notOracle(caller), true, from);
        whole = false;
        if (a == Action.RECLAIM) {
            if (PLACED & _bit(from) == 0) return (_unexpected(id, from, PLACED), false, from);
            return ("", false, JobStatus.PENDING);
        }
        if (from != JobStatus.RUNNING) return (_unexpected(id, from, _bit(JobStatus.RUNNING)), false, from);
        return ("", false, a == Action.FAIL ? JobStatus.FAILED : JobStatus.OUT_OF_CREDITS);
    }

    function _do(Action a, address caller, uint256 id, Terms memory t, bytes memory err, bool whole) internal {
        if (err.length != 0 && whole) vm.expectRevert(err);
        if (err.length != 0 && !whole) {
            vm.expectEmit(true, true, true, true, address(market));
            emit IJobMarket.BatchItemSkipped(0, id, err);
        }
        vm.prank(caller);
        if (a == Action.PLACE) market.placeJob(Placement(id, provA, t, type(uint256).max));
        else if (a == Action.ACCEPT) market.acceptJob(id);
        else if (a == Action.START) market.startJob(id, block.timestamp);
        else if (a == Action.COMPLETE) market.completeJob(id, 0, bytes32(0), block.timestamp);
        else if (a == Action.REFUSE) market.refuseJob(id, "busy");
        else if (a == Action.CANCEL) market.cancelJob(id);
        else if (a == Action.TOP_UP) market.topUp(id, 1);
        else _batch(a, id, err.length == 0 ? 1 : 0, whole && err.length != 0);
    }

    function _batch(Action a, uint256 id, uint256 expectedDone, bool reverts) internal {
        uint256 done;
        if (a == Action.RECLAIM) done = market.reclaimJobs(_ids(id));
        else if (a == Action.FAIL) done = market.failJobs(_silent(_ids(id)));
        else done = market.expireJobs(_ids(id));
        if (!reverts) assertEq(done, expectedDone, "batch done count");
    }

    function _runTable(Action a) internal {
        _runTable(a, false);
        _runTable(a, true);
    }

    function _runTable(Action a, bool banned) internal {
        address[7] memory callers = _callers();
        for (uint256 s; s < N_STATUSES; ++s) {
            for (uint256 c; c < callers.length; ++c) {
                JobStatus from = JobStatus(s);
                uint256 unbanned = vm.snapshotState(); // a ban is for good: each cell undoes its own
                (uint256 id, Terms memory t) = _jobIn(from, alice, SMALL_ESCROW);
                if (banned) {
                    vm.prank(admin);
                    market.banProvider(provA);
                }
                vm.warp(block.timestamp + START_TIMEOUT + 1); // every timeout run out, every escrow spent
                (bytes memory err, bool whole, JobStatus to) = _model(a, callers[c], id, from, banned);
                JobView memory before = market.getJob(id);
                _do(a, callers[c], id, t, err, whole);
                JobView memory afterwards = market.getJob(id);
                if (err.length != 0) {
                    assertEq(abi.encode(afterwards), abi.encode(before), "a denied action changed the job");
                } else {
                    assertEq(uint8(afterwards.status), uint8(to), "allowed action led to the wrong status");
                }
                vm.revertToState(unbanned);
            }
        }
    }

    function test_table_place() public {
        _runTable(Action.PLACE);
    }

    function test_table_accept() public {
        _runTable(Action.ACCEPT);
    }

    function test_table_start() public {
        _runTable(Action.START);
    }

    function test_table_complete() public {
        _runTable(Action.COMPLETE);
    }

    function test_table_refuse() public {
        _runTable(Action.REFUSE);
    }

    function test_table_cancel() public {
        _runTable(Action.CANCEL);
    }

    function test_table_topUp() public {
        _runTable(Action.TOP_UP);
    }

    function test_table_reclaim() public {
        _runTable(Action.RECLAIM);
    }

    function test_table_fail() public {
        _runTable(Action.FAIL);
    }

    function test_table_expire() public {
        _runTable(Action.EXPIRE);
    }

    /// @dev A job cancelled while PENDING never had a provider: terminal all the same.
    function test_terminal_cancelledWhilePendingNeverChanges() public {
        (uint256 id, Terms memory t) = _request(alice, SMALL_ESCROW);
        vm.prank(alice);
        market.cancelJob(id);
        bytes memory err = _unexpected(id, JobStatus.CANCELLED, _bit(JobStatus.PENDING));
        vm.expectRevert(err);
        vm.prank(oracle);
        market.placeJob(Placement(id, provA, t, type(uint256).max));
        vm.expectRevert(_unexpected(id, JobStatus.CANCELLED, LIVE));
        vm.prank(alice);
        market.cancelJob(id);
        vm.expectRevert(_unexpected(id, JobStatus.CANCELLED, LIVE));
        vm.prank(alice);
        market.topUp(id, 1);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotAssignedProvider.selector, id, provA, address(0)));
        vm.prank(provA);
        market.acceptJob(id);
        assertEq(uint8(_status(id)), uint8(JobStatus.CANCELLED));
    }

    // ------------------------------------------------------------------ unknown jobs

    function test_unknownJob_everyActionRevertsJobNotFound() public {
        uint256 id = 42;
        bytes memory err = abi.encodeWithSelector(IJobMarket.JobNotFound.selector, id);
        vm.expectRevert(err);
        market.getJob(id);
        vm.expectRevert(err);
        market.fundedUntil(id);
        vm.expectRevert(err);
        vm.prank(oracle);
        market.placeJob(Placement(id, provA, _terms(4, 0, 8192, CREDIT), type(uint256).max));
        vm.expectRevert(err);
        vm.prank(provA);
        market.acceptJob(id);
        vm.expectRevert(err);
        vm.prank(provA);
        market.startJob(id, block.timestamp);
        vm.expectRevert(err);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        vm.expectRevert(err);
        vm.prank(provA);
        market.refuseJob(id, "x");
        vm.expectRevert(err);
        vm.prank(alice);
        market.cancelJob(id);
        vm.expectRevert(err);
        vm.prank(alice);
        market.topUp(id, 1);
        _expectSkipped(0, id, err);
        vm.prank(oracle);
        market.reclaimJobs(_ids(id));
        _expectSkipped(0, id, err);
        vm.prank(oracle);
        market.failJobs(_silent(_ids(id)));
        _expectSkipped(0, id, err);
        market.expireJobs(_ids(id));
    }

    // ------------------------------------------------------------------ events, one per transition

    function test_request_emitsJobRequested() public {
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobRequested(1, alice, 5 * CREDIT, 0, CREDIT, 4, 0, 8192, spec);
        _request(alice, 5 * CREDIT);
        _assertOneMarketLog();
    }

    function test_place_emitsJobPlaced() public {
        (uint256 id, Terms memory t) = _request(alice, 5 * CREDIT);
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobPlaced(id, provA, JobStatus.PENDING, JobStatus.META_SCHEDULED, PRICE_A);
        _place(id, t, provA);
        _assertOneMarketLog();
        JobView memory j = market.getJob(id);
        assertEq(j.provider, provA);
        assertEq(j.pricePerMinute, PRICE_A);
        assertEq(j.since, block.timestamp);
    }

    function test_accept_emitsJobStatusChanged() public {
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobStatusChanged(id, JobStatus.META_SCHEDULED, JobStatus.SCHEDULED, block.timestamp);
        vm.prank(provA);
        market.acceptJob(id);
        _assertOneMarketLog();
    }

    function test_start_emitsJobStatusChangedAndRecordsStart() public {
        (uint256 id,) = _jobIn(JobStatus.SCHEDULED, alice, 5 * CREDIT);
        vm.warp(block.timestamp + 77);
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobStatusChanged(id, JobStatus.SCHEDULED, JobStatus.RUNNING, block.timestamp);
        vm.prank(provA);
        market.startJob(id, block.timestamp);
        _assertOneMarketLog();
        assertEq(market.getJob(id).since, block.timestamp);
    }

    function test_start_revertsIfNotAssignedProvider() public {
        (uint256 id,) = _jobIn(JobStatus.SCHEDULED, alice, 5 * CREDIT);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotAssignedProvider.selector, id, provB, provA));
        vm.prank(provB);
        market.startJob(id, block.timestamp);
    }

    function test_complete_exitZeroFinishesAndEmitsJobEnded() public {
        (uint256 id,) = _jobIn(JobStatus.RUNNING, alice, 5 * CREDIT);
        vm.warp(block.timestamp + 600);
        uint256 cost = PRICE_A * 10;
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.FINISHED, cost, 0, 5 * CREDIT - cost, 0, bytes32(0), block.timestamp);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        _assertOneMarketLog();
        assertEq(uint8(_status(id)), uint8(JobStatus.FINISHED));
    }

    function test_complete_nonzeroExitFailsWithExitCode() public {
        (uint256 id,) = _jobIn(JobStatus.RUNNING, alice, 5 * CREDIT);
        vm.warp(block.timestamp + 90);
        uint256 cost = PRICE_A * 90 / 60;
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.FAILED, cost, 0, 5 * CREDIT - cost, -137, bytes32(0), block.timestamp);
        vm.prank(provA);
        market.completeJob(id, -137, bytes32(0), block.timestamp);
        assertEq(uint8(_status(id)), uint8(JobStatus.FAILED));
    }

    function test_refuse_returnsToPendingWithReason() public {
        (uint256 id, Terms memory t) = _jobIn(JobStatus.SCHEDULED, alice, 5 * CREDIT);
        uint256 before = market.balanceOf(alice);
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobReturned(id, provA, JobStatus.SCHEDULED, JobStatus.PENDING, "no GPU left");
        vm.prank(provA);
        market.refuseJob(id, "no GPU left");
        _assertOneMarketLog();
        JobView memory j = market.getJob(id);
        assertEq(uint8(j.status), uint8(JobStatus.PENDING));
        assertEq(j.provider, address(0));
        assertEq(j.pricePerMinute, 0);
        assertEq(j.escrow, 5 * CREDIT, "nothing billed");
        assertEq(market.balanceOf(alice), before);
        // It can be placed again, elsewhere.
        _place(id, t, provB);
        assertEq(market.getJob(id).provider, provB);
    }

    function test_refuse_fromMetaScheduled() public {
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobReturned(id, provA, JobStatus.META_SCHEDULED, JobStatus.PENDING, "maintenance");
        vm.prank(provA);
        market.refuseJob(id, "maintenance");
    }

    function test_topUp_emitsJobToppedUp() public {
        (uint256 id,) = _jobIn(JobStatus.RUNNING, alice, 5 * CREDIT);
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobToppedUp(id, 2 * CREDIT, 7 * CREDIT);
        vm.prank(alice);
        market.topUp(id, 2 * CREDIT);
        _assertOneMarketLog();
    }

    // ------------------------------------------------------------------ reclaim after timeouts

    function test_reclaim_metaScheduledOnlyAfterAcceptTimeout() public {
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        uint256 deadline = block.timestamp + ACCEPT_TIMEOUT;
        vm.warp(deadline - 1);
        _expectSkipped(
            0, id, abi.encodeWithSelector(IJobMarket.JobTimeoutNotReached.selector, id, deadline, deadline - 1)
        );
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 0);
        assertEq(uint8(_status(id)), uint8(JobStatus.META_SCHEDULED));

        vm.warp(deadline);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobReturned(id, provA, JobStatus.META_SCHEDULED, JobStatus.PENDING, "not accepted in time");
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 1);
        assertEq(uint8(_status(id)), uint8(JobStatus.PENDING));
        assertEq(market.getJob(id).escrow, 5 * CREDIT);
    }

    function test_reclaim_scheduledOnlyAfterStartTimeoutCountedFromAccept() public {
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        vm.warp(block.timestamp + 200); // accepted late, but in time
        vm.prank(provA);
        market.acceptJob(id);
        uint256 deadline = block.timestamp + START_TIMEOUT;
        vm.warp(deadline - 1);
        _expectSkipped(
            0, id, abi.encodeWithSelector(IJobMarket.JobTimeoutNotReached.selector, id, deadline, deadline - 1)
        );
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 0);

        vm.warp(deadline);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobReturned(id, provA, JobStatus.SCHEDULED, JobStatus.PENDING, "not started in time");
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 1);
    }

    function test_reclaim_revertsIfNotOracle() public {
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        vm.warp(block.timestamp + ACCEPT_TIMEOUT);
        vm.expectRevert(_notOracle(provA));
        vm.prank(provA);
        market.reclaimJobs(_ids(id));
    }

    function test_reclaim_usesTimeoutsSetByAdmin() public {
        vm.prank(admin);
        market.setTimeouts(10, 20);
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        vm.warp(block.timestamp + 10);
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 1);
    }

    // ------------------------------------------------------------------ failJobs: silent providers

    function test_failJobs_refundsCustomerInFull() public {
        (uint256 id,) = _jobIn(JobStatus.RUNNING, alice, 5 * CREDIT);
        uint256 before = market.balanceOf(alice);
        uint256 provBefore = market.balanceOf(provA);
        uint256 started = block.timestamp;
        vm.warp(block.timestamp + 3600);
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        // No sign of life after the start: billed up to the start, nothing.
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.FAILED, 0, 0, 5 * CREDIT, -1, bytes32(0), started);
        vm.prank(oracle);
        assertEq(market.failJobs(_silent(_ids(id))), 1);
        _assertOneMarketLog();
        assertEq(market.balanceOf(alice), before + 5 * CREDIT);
        assertEq(market.balanceOf(provA), provBefore);
        assertEq(uint8(_status(id)), uint8(JobStatus.FAILED));
    }

    // ------------------------------------------------------------------ expireJobs: OUT_OF_CREDITS

    function test_expire_revertsUntilFundedUntilThenPaysEscrow() public {
        (uint256 id,) = _jobIn(JobStatus.RUNNING, alice, SMALL_ESCROW);
        uint256 until = block.timestamp + (SMALL_ESCROW * 60 + PRICE_A - 1) / PRICE_A;
        assertEq(market.fundedUntil(id), until);
        vm.warp(until - 1);
        _expectSkipped(0, id, abi.encodeWithSelector(IJobMarket.JobStillFunded.selector, id, until, until - 1));
        vm.prank(stranger);
        assertEq(market.expireJobs(_ids(id)), 0);
        assertEq(uint8(_status(id)), uint8(JobStatus.RUNNING));

        vm.warp(until);
        uint256 provBefore = market.balanceOf(provA);
        vm.recordLogs();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.OUT_OF_CREDITS, SMALL_ESCROW, 0, 0, -1, bytes32(0), block.timestamp);
        vm.prank(stranger); // anyone may
        assertEq(market.expireJobs(_ids(id)), 1);
        _assertOneMarketLog();
        assertEq(market.balanceOf(provA), provBefore + SMALL_ESCROW);
    }

    function test_topUp_extendsFundedUntil() public {
        (uint256 id,) = _jobIn(JobStatus.RUNNING, alice, SMALL_ESCROW);
        uint256 start = block.timestamp;
        uint256 until = market.fundedUntil(id);
        vm.warp(until - 10);
        vm.prank(alice);
        market.topUp(id, SMALL_ESCROW);
        uint256 later = start + (2 * SMALL_ESCROW * 60 + PRICE_A - 1) / PRICE_A;
        assertEq(market.fundedUntil(id), later);
        assertGt(later, until);
        vm.warp(until);
        _expectSkipped(0, id, abi.encodeWithSelector(IJobMarket.JobStillFunded.selector, id, later, until));
        market.expireJobs(_ids(id));
        vm.warp(later);
        assertEq(market.expireJobs(_ids(id)), 1);
    }

    function test_topUp_beforeStartExtendsTheRun() public {
        (uint256 id,) = _jobIn(JobStatus.SCHEDULED, alice, SMALL_ESCROW);
        vm.prank(alice);
        market.topUp(id, SMALL_ESCROW);
        vm.prank(provA);
        market.startJob(id, block.timestamp);
        assertEq(market.fundedUntil(id), block.timestamp + (2 * SMALL_ESCROW * 60 + PRICE_A - 1) / PRICE_A);
    }

    function test_fundedUntil_revertsIfNotRunning() public {
        (uint256 id,) = _jobIn(JobStatus.SCHEDULED, alice, SMALL_ESCROW);
        vm.expectRevert(_unexpected(id, JobStatus.SCHEDULED, _bit(JobStatus.RUNNING)));
        market.fundedUntil(id);
    }

    function test_expire_freeJobNeverRunsDry() public {
        address freeProv = makeAddr("free");
        _provider(freeProv, _zeroPrices());
        (uint256 id, Terms memory t) = _request(alice, SMALL_ESCROW);
        _place(id, t, freeProv);
        vm.startPrank(freeProv);
        market.acceptJob(id);
        market.startJob(id, block.timestamp);
        vm.stopPrank();
        assertEq(market.fundedUntil(id), type(uint256).max);
        vm.warp(block.timestamp + 365 days);
        _expectSkipped(
            0, id, abi.encodeWithSelector(IJobMarket.JobStillFunded.selector, id, type(uint256).max, block.timestamp)
        );
        market.expireJobs(_ids(id));
        vm.prank(freeProv);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(freeProv), 0);
    }

    // ------------------------------------------------------------------ cancel in each live state

    function test_cancel_refundsUnusedEscrow() public {
        (uint256 id,) = _jobIn(JobStatus.RUNNING, alice, 5 * CREDIT);
        uint256 before = market.balanceOf(alice);
        vm.warp(block.timestamp + 125);
        uint256 cost = PRICE_A * 125 / 60; // 10,000
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.CANCELLED, cost, 0, 5 * CREDIT - cost, -1, bytes32(0), block.timestamp);
        vm.prank(alice);
        market.cancelJob(id);
        assertEq(market.balanceOf(alice), before + 5 * CREDIT - cost);
        assertEq(market.balanceOf(provA), cost);
        JobView memory j = market.getJob(id);
        assertEq(j.escrow, 0);
        assertEq(j.customer, address(0));
        assertEq(j.since, block.timestamp);
    }

    function test_cancel_beforeRunningBillsNothing() public {
        for (uint256 s; s < 3; ++s) {
            JobStatus from = JobStatus(s);
            (uint256 id,) = _jobIn(from, alice, 5 * CREDIT);
            vm.warp(block.timestamp + 1000); // time passing while not running costs nothing
            uint256 before = market.balanceOf(alice);
            vm.recordLogs();
            vm.expectEmit(true, true, true, true, address(market));
            emit IJobMarket.JobEnded(id, from, JobStatus.CANCELLED, 0, 0, 5 * CREDIT, -1, bytes32(0), block.timestamp);
            vm.prank(alice);
            market.cancelJob(id);
            _assertOneMarketLog();
            assertEq(market.balanceOf(alice), before + 5 * CREDIT);
            assertEq(market.balanceOf(provA), 0);
        }
    }

    function test_cancel_revertsIfNotCustomer() public {
        (uint256 id,) = _jobIn(JobStatus.RUNNING, alice, 5 * CREDIT);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotCustomer.selector, id, bob, alice));
        vm.prank(bob);
        market.cancelJob(id);
    }

    function _zeroPrices() internal pure returns (Prices memory) {
        return Prices(0, 0, 0);
    }
}
