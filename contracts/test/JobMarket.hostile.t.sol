// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Fixture} from "./utils/Fixture.sol";
import {
    IJobMarket,
    Hardware,
    JobStatus,
    Placement,
    Prices,
    ProviderAction,
    ProviderStatus,
    ProviderStep,
    SilentJob,
    Terms
} from "../src/interfaces/IJobMarket.sol";

/// @notice What a provider, customer or admin acting in bad faith (or by mistake) tried, and what
/// the market now does: no bill above the quote, a ban that stops placed jobs, timeouts fixed at
/// placement, credits sent by plain transfer recoverable, a request fee that spam pays, a silent
/// provider paid up to its last sign of life, and the completion's result digest in `JobEnded`.
contract HostileTest is Fixture {
    bytes32 internal constant DIGEST = keccak256("encrypted outputs and final log chain");

    function _reRegister(address who, Prices memory prices) internal {
        string[] memory labels = new string[](1);
        labels[0] = "x86_64";
        vm.prank(who);
        market.registerProvider(Hardware(4, 256, 8, 1_048_576), prices, labels);
    }

    // ------------------------------------------------------------ prices: never above the quote

    function test_priceHikeAfterQuote_placementFailsInsteadOfBillingMore() public {
        (uint256 id, Terms memory t) = _request(alice, 100 * CREDIT);
        uint256 quoted = market.quote(provA, t.cpus, t.gpus, t.memMb); // what the oracle saw
        assertEq(quoted, PRICE_A);
        // The provider raises its CPU price 208-fold before the placement is mined (still under
        // the customer's max price of 1 credit a minute).
        _reRegister(provA, Prices(208_000, 50_000, 100));
        assertGt(market.quote(provA, t.cpus, t.gpus, t.memMb), quoted);

        uint256 hiked = market.quote(provA, t.cpus, t.gpus, t.memMb);
        vm.prank(oracle);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobPriceAboveQuote.selector, id, provA, hiked, quoted));
        market.placeJob(Placement(id, provA, t, quoted));
        assertEq(uint8(_status(id)), uint8(JobStatus.PENDING));
    }

    function test_priceCutAfterQuote_billsTheLowerPrice() public {
        (uint256 id, Terms memory t) = _request(alice, 100 * CREDIT);
        _reRegister(provA, Prices(500, 50_000, 100));
        vm.prank(oracle);
        market.placeJob(Placement(id, provA, t, PRICE_A));
        assertEq(market.getJob(id).pricePerMinute, 4 * 500 + 8 * 100);
    }

    function test_priceHikeInABatch_skipsOnlyThatItem() public {
        (uint256 a, Terms memory ta) = _request(alice, 10 * CREDIT);
        (uint256 b, Terms memory tb) = _request(alice, 10 * CREDIT);
        uint256 quotedB = market.quote(provB, tb.cpus, tb.gpus, tb.memMb);
        _reRegister(provA, Prices(2_000, 50_000, 100));
        Placement[] memory batch = new Placement[](2);
        batch[0] = Placement(a, provA, ta, PRICE_A);
        batch[1] = Placement(b, provB, tb, quotedB);
        _expectSkipped(
            0,
            a,
            abi.encodeWithSelector(IJobMarket.JobPriceAboveQuote.selector, a, provA, 4 * 2_000 + 8 * 100, PRICE_A)
        );
        vm.prank(oracle);
        assertEq(market.placeJobs(batch), 1);
        assertEq(uint8(_status(b)), uint8(JobStatus.META_SCHEDULED));
    }

    // ------------------------------------------------------------ bans and live jobs

    function test_ban_placedJobCannotBeAcceptedAndIsReclaimedAtOnce() public {
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        vm.prank(admin);
        market.banProvider(provA);
        vm.prank(provA);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderBanned.selector, provA));
        market.acceptJob(id);
        // No need to wait for the accept timeout: a banned provider will never accept.
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobReturned(id, provA, JobStatus.META_SCHEDULED, JobStatus.PENDING, "provider banned");
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 1);
    }

    /// A job the provider accepted before its ban may still start and is billed as usual: its
    /// backend may already run it, and refusing the START would leave that compute unpaid and
    /// have the job run again elsewhere.
    function test_ban_jobAcceptedBeforeTheBanStartsAndIsBilledSingleOrBatched() public {
        (uint256 single,) = _jobIn(JobStatus.SCHEDULED, alice, 5 * CREDIT);
        (uint256 batched,) = _jobIn(JobStatus.SCHEDULED, alice, 5 * CREDIT);
        vm.prank(admin);
        market.banProvider(provA);
        vm.prank(provA);
        market.startJob(single, block.timestamp);
        ProviderStep[] memory steps = new ProviderStep[](1);
        steps[0] = ProviderStep(batched, ProviderAction.START, 0, bytes32(0), block.timestamp);
        vm.prank(provA);
        assertEq(market.providerBatch(steps), 1);
        assertEq(uint8(_status(single)), uint8(JobStatus.RUNNING));
        assertEq(uint8(_status(batched)), uint8(JobStatus.RUNNING));

        vm.warp(block.timestamp + 60);
        vm.prank(provA);
        market.completeJob(single, 0, DIGEST, block.timestamp);
        assertEq(market.balanceOf(provA), PRICE_A, "the minute run after the ban is paid");
    }

    /// The oracle takes back at once only what a banned provider can no longer take (a placement
    /// not accepted); a job it accepted waits for its start timeout like any other.
    function test_ban_jobAcceptedBeforeTheBanIsReclaimedOnlyAfterItsStartTimeout() public {
        (uint256 id,) = _jobIn(JobStatus.SCHEDULED, alice, 5 * CREDIT);
        uint256 acceptedAt = block.timestamp;
        vm.prank(admin);
        market.banProvider(provA);
        _expectSkipped(
            0,
            id,
            abi.encodeWithSelector(
                IJobMarket.JobTimeoutNotReached.selector, id, acceptedAt + START_TIMEOUT, block.timestamp
            )
        );
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 0);
        assertEq(uint8(_status(id)), uint8(JobStatus.SCHEDULED));

        vm.warp(acceptedAt + START_TIMEOUT);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobReturned(id, provA, JobStatus.SCHEDULED, JobStatus.PENDING, "not started in time");
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 1);
    }

    /// A ban stops new work at once: no new placement on the banned provider, no ACCEPT by it
    /// (single or batched), while the jobs it already runs go on.
    function test_ban_stopsNewPlacementsAndAcceptsAtOnce() public {
        (uint256 placed,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        (uint256 fresh, Terms memory t) = _request(alice, 5 * CREDIT);
        vm.prank(admin);
        market.banProvider(provA);
        vm.prank(oracle);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.ProviderNotApproved.selector, provA, ProviderStatus.BANNED)
        );
        market.placeJob(Placement(fresh, provA, t, PRICE_A));
        ProviderStep[] memory steps = new ProviderStep[](1);
        steps[0] = ProviderStep(placed, ProviderAction.ACCEPT, 0, bytes32(0), 0);
        _expectSkipped(0, placed, abi.encodeWithSelector(IJobMarket.ProviderBanned.selector, provA));
        vm.prank(provA);
        assertEq(market.providerBatch(steps), 0);
        assertEq(uint8(_status(placed)), uint8(JobStatus.META_SCHEDULED));
    }

    function test_ban_runningJobIsBilledForItsWholeRun() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.warp(block.timestamp + 60);
        vm.prank(admin);
        market.banProvider(provA);
        vm.warp(block.timestamp + 60);
        vm.prank(provA);
        market.completeJob(id, 0, DIGEST, block.timestamp);
        assertEq(market.balanceOf(provA), 2 * PRICE_A, "both minutes, before and after the ban");
    }

    // ------------------------------------------------------------ timeouts fixed at placement

    function test_timeoutsShortenedAfterPlacement_doNotApplyToIt() public {
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, 5 * CREDIT);
        uint256 placedAt = block.timestamp;
        vm.prank(admin);
        market.setTimeouts(1, 1);
        vm.warp(placedAt + 2);
        _expectSkipped(
            0,
            id,
            abi.encodeWithSelector(IJobMarket.JobTimeoutNotReached.selector, id, placedAt + ACCEPT_TIMEOUT, placedAt + 2)
        );
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 0, "the accept timeout of its placement still runs");
        vm.warp(placedAt + ACCEPT_TIMEOUT);
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 1);
    }

    function test_timeoutsLengthenedAfterPlacement_doNotDelayItsReclaim() public {
        (uint256 id,) = _jobIn(JobStatus.SCHEDULED, alice, 5 * CREDIT);
        uint256 acceptedAt = block.timestamp;
        vm.prank(admin);
        market.setTimeouts(1_000_000, 1_000_000);
        vm.warp(acceptedAt + START_TIMEOUT);
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 1);
        // A job placed after the change gets the new timeouts.
        (uint256 later, Terms memory t) = _request(alice, 5 * CREDIT);
        _place(later, t, provA);
        uint256 placedAt = block.timestamp;
        vm.warp(placedAt + ACCEPT_TIMEOUT);
        _expectSkipped(
            0,
            later,
            abi.encodeWithSelector(
                IJobMarket.JobTimeoutNotReached.selector, later, placedAt + 1_000_000, placedAt + ACCEPT_TIMEOUT
            )
        );
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(later)), 0);
    }

    // ------------------------------------------------------------ credits sent by plain transfer

    function test_plainTransfer_isSweptToANamedAccountAndNothingElseMoves() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.prank(admin);
        credit.mint(bob, 7 * CREDIT);
        vm.prank(bob);
        credit.transfer(address(market), 7 * CREDIT); // by mistake, instead of deposit
        uint256 held = credit.balanceOf(address(market));
        uint256 aliceBalance = market.balanceOf(alice);

        vm.expectRevert(); // only the admin
        vm.prank(stranger);
        market.sweepSurplus(stranger);

        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.SurplusSwept(bob, 7 * CREDIT);
        vm.prank(admin);
        market.sweepSurplus(bob);
        assertEq(credit.balanceOf(bob), 7 * CREDIT);
        assertEq(credit.balanceOf(address(market)), held - 7 * CREDIT);
        assertEq(market.balanceOf(alice), aliceBalance);
        assertEq(market.getJob(id).escrow, 5 * CREDIT);

        vm.expectRevert(IJobMarket.MarketZeroAmount.selector);
        vm.prank(admin);
        market.sweepSurplus(bob);
    }

    function test_sweep_neverTakesBalancesEscrowsOrFees() public {
        vm.prank(admin);
        market.setFee(1_000);
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        vm.prank(alice);
        market.withdraw(CREDIT);
        vm.expectRevert(IJobMarket.MarketZeroAmount.selector);
        vm.prank(admin);
        market.sweepSurplus(admin);
        uint256 fees = market.accruedFees();
        vm.prank(admin);
        market.withdrawFees(admin, fees);
        vm.expectRevert(IJobMarket.MarketZeroAmount.selector);
        vm.prank(admin);
        market.sweepSurplus(admin);
    }

    // ------------------------------------------------------------ spam pays a request fee

    function test_requestFee_isPaidEvenIfTheJobIsCancelled() public {
        vm.prank(admin);
        market.setRequestFee(10_000); // 0.01 credit
        uint256 before = market.balanceOf(alice);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobRequested(1, alice, 1, 10_000, CREDIT, 4, 0, 8192, spec);
        vm.prank(alice);
        uint256 id = market.requestJob(4, 0, 8192, CREDIT, 1, spec);
        vm.prank(alice);
        market.cancelJob(id);
        assertEq(market.balanceOf(alice), before - 10_000);
        assertEq(market.accruedFees(), 10_000);
    }

    function test_requestFee_cappedAndAdminOnly() public {
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.MarketRequestFeeTooHigh.selector, 1 << 24, type(uint24).max)
        );
        market.setRequestFee(1 << 24);
        vm.expectRevert();
        vm.prank(stranger);
        market.setRequestFee(1);
    }

    // ------------------------------------------------------------ silent providers: paid to the last sign of life

    function test_failJobs_billsUpToLastSeenAndRefundsTheRest() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        uint256 start = block.timestamp;
        vm.warp(start + 900);
        SilentJob[] memory jobs = new SilentJob[](1);
        jobs[0] = SilentJob(id, start + 300); // its last heartbeat, 5 minutes in
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(
            id, JobStatus.RUNNING, JobStatus.FAILED, 5 * PRICE_A, 0, 5 * CREDIT - 5 * PRICE_A, -1, bytes32(0), start + 300
        );
        vm.prank(oracle);
        assertEq(market.failJobs(jobs), 1);
        assertEq(market.balanceOf(provA), 5 * PRICE_A);
    }

    function test_failJobs_lastSeenIsClampedBetweenStartAndNow() public {
        (uint256 a,) = _running(alice, 5 * CREDIT);
        (uint256 b,) = _running(alice, 5 * CREDIT);
        uint256 start = block.timestamp;
        vm.warp(start + 120);
        SilentJob[] memory jobs = new SilentJob[](2);
        jobs[0] = SilentJob(a, start + 100_000); // in the future: no later than now
        jobs[1] = SilentJob(b, start - 1_000); // before the start: nothing
        vm.prank(oracle);
        assertEq(market.failJobs(jobs), 2);
        assertEq(market.balanceOf(provA), 2 * PRICE_A, "job a: two minutes, job b: nothing");
    }

    // ------------------------------------------------------------ the completion's result digest

    function test_complete_emitsTheResultDigest() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.warp(block.timestamp + 60);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(id, JobStatus.RUNNING, JobStatus.FINISHED, PRICE_A, 0, 5 * CREDIT - PRICE_A, 0, DIGEST, block.timestamp);
        vm.prank(provA);
        market.completeJob(id, 0, DIGEST, block.timestamp);
    }

    function test_providerBatch_completeEmitsEachItemsDigest() public {
        (uint256 a,) = _running(alice, 5 * CREDIT);
        (uint256 b,) = _running(alice, 5 * CREDIT);
        ProviderStep[] memory steps = new ProviderStep[](2);
        steps[0] = ProviderStep(a, ProviderAction.COMPLETE, 0, keccak256("a"), block.timestamp);
        steps[1] = ProviderStep(b, ProviderAction.COMPLETE, 3, keccak256("b"), block.timestamp);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(a, JobStatus.RUNNING, JobStatus.FINISHED, 0, 0, 5 * CREDIT, 0, keccak256("a"), block.timestamp);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobEnded(b, JobStatus.RUNNING, JobStatus.FAILED, 0, 0, 5 * CREDIT, 3, keccak256("b"), block.timestamp);
        vm.prank(provA);
        assertEq(market.providerBatch(steps), 2);
    }
}
