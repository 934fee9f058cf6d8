// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

import {Fixture} from "./utils/Fixture.sol";
import {IJobMarket, JobStatus, Placement, ProviderAction, ProviderStep, Terms} from "../src/interfaces/IJobMarket.sol";

/// @notice The "must not"s of docs/security.md, each played as an attack: the attempt fails with
/// the exact error (or is skipped in a batch) AND no credit moves. The transition table
/// (JobMarket.transitions.t.sol) proves who may make each single step; these tests cover what it
/// does not: money left untouched, stale and duplicate steps, forged terms, the oracle's and the
/// admin's reach over credits, and fees across a change.
contract SecurityTest is Fixture {
    uint256 internal constant ESCROW = 10 * CREDIT;

    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    // ------------------------------------------------------------------ helpers

    /// @dev Every credit figure an attack could move: each actor's balance here and in its wallet,
    /// the fees, and the job's escrow. Compared whole before and after an attempt.
    function _money(uint256 jobId) internal view returns (uint256[] memory m) {
        address[7] memory who = [admin, oracle, alice, bob, provA, provB, stranger];
        m = new uint256[](2 * who.length + 3);
        for (uint256 i; i < who.length; ++i) {
            m[2 * i] = market.balanceOf(who[i]);
            m[2 * i + 1] = credit.balanceOf(who[i]);
        }
        m[2 * who.length] = market.accruedFees();
        m[2 * who.length + 1] = credit.balanceOf(address(market));
        m[2 * who.length + 2] = market.getJob(jobId).escrow;
    }

    function _notProvider(uint256 id, address caller, address assigned) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobNotAssignedProvider.selector, id, caller, assigned);
    }

    function _notCustomer(uint256 id, address caller) internal view returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobNotCustomer.selector, id, caller, alice);
    }

    function _step(uint256 id, ProviderAction action) internal view returns (ProviderStep[] memory s) {
        s = new ProviderStep[](1);
        s[0] = ProviderStep(id, action, 0, bytes32(0), block.timestamp);
    }

    // ------------------------------------------------------------------ customers

    /// A customer cannot cancel or top up another's job, in any live status, and nothing moves.
    function test_customer_cannotCancelJobOfAnother() public {
        for (uint8 s; s <= uint8(JobStatus.RUNNING); ++s) {
            (uint256 id,) = _jobIn(JobStatus(s), alice, ESCROW);
            vm.warp(block.timestamp + 600); // a running job has something to bill
            uint256[] memory before = _money(id);

            vm.expectRevert(_notCustomer(id, bob));
            vm.prank(bob);
            market.cancelJob(id);
            vm.expectRevert(_notCustomer(id, bob));
            vm.prank(bob);
            market.topUp(id, CREDIT);

            assertEq(uint8(_status(id)), s, "status changed");
            assertEq(_money(id), before, "credits moved");
        }
    }

    /// Credits held by the market for one customer (balance and escrow) cannot be withdrawn by another.
    function test_customer_cannotWithdrawCreditsOfAnother() public {
        (uint256 id,) = _running(alice, ESCROW);
        uint256 bobs = market.balanceOf(bob);
        assertGt(credit.balanceOf(address(market)), bobs + 1, "the market holds more than bob's credits");
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.MarketInsufficientBalance.selector, bob, bobs, bobs + 1));
        vm.prank(bob);
        market.withdraw(bobs + 1);

        vm.prank(bob);
        market.withdraw(bobs);
        assertEq(market.balanceOf(alice), 10_000 * CREDIT - ESCROW, "alice's balance touched");
        assertEq(market.getJob(id).escrow, ESCROW, "alice's escrow touched");
    }

    // ------------------------------------------------------------------ providers

    /// A provider cannot accept, start, complete or refuse a job placed on another provider, by
    /// single call or in a batch, and nothing moves.
    function test_provider_cannotCompleteJobOfAnother() public {
        (uint256 id,) = _running(alice, ESCROW);
        vm.warp(block.timestamp + 600);
        uint256[] memory before = _money(id);

        vm.expectRevert(_notProvider(id, provB, provA));
        vm.prank(provB);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        vm.expectRevert(_notProvider(id, provB, provA));
        vm.prank(provB);
        market.refuseJob(id, "mine now");

        ProviderStep[] memory steps = new ProviderStep[](3);
        steps[0] = ProviderStep(id, ProviderAction.ACCEPT, 0, bytes32(0), block.timestamp);
        steps[1] = ProviderStep(id, ProviderAction.START, 0, bytes32(0), block.timestamp);
        steps[2] = ProviderStep(id, ProviderAction.COMPLETE, 0, bytes32(0), block.timestamp);
        vm.prank(provB);
        assertEq(market.providerBatch(steps), 0, "a step on another's job went through");

        assertEq(uint8(_status(id)), uint8(JobStatus.RUNNING));
        assertEq(_money(id), before, "credits moved");
    }

    /// A provider cannot give back (and so deny) a job placed on another provider while it waits.
    function test_provider_cannotRefuseJobOfAnother() public {
        (uint256 id,) = _jobIn(JobStatus.SCHEDULED, alice, ESCROW);
        vm.expectRevert(_notProvider(id, provB, provA));
        vm.prank(provB);
        market.refuseJob(id, "not yours");
        assertEq(market.getJob(id).provider, provA);
        assertEq(uint8(_status(id)), uint8(JobStatus.SCHEDULED));
    }

    /// A job not placed (PENDING) has no provider: no provider can start or bill it.
    function test_provider_cannotBillJobNotPlacedOnIt() public {
        (uint256 id,) = _request(alice, ESCROW);
        uint256[] memory before = _money(id);
        vm.startPrank(provA);
        vm.expectRevert(_notProvider(id, provA, address(0)));
        market.acceptJob(id);
        vm.expectRevert(_notProvider(id, provA, address(0)));
        market.startJob(id, block.timestamp);
        vm.expectRevert(_notProvider(id, provA, address(0)));
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        vm.stopPrank();
        assertEq(_money(id), before, "credits moved");
    }

    /// Once a placement is reclaimed and the job placed elsewhere, the first provider has no hold
    /// on it: its late accept or complete fails, and only the new provider is paid.
    function test_provider_cannotActAfterJobWasReclaimed() public {
        (uint256 id, Terms memory t) = _jobIn(JobStatus.META_SCHEDULED, alice, ESCROW);
        vm.warp(block.timestamp + ACCEPT_TIMEOUT);
        vm.prank(oracle);
        market.reclaimJobs(_ids(id));
        _place(id, t, provB);

        vm.expectRevert(_notProvider(id, provA, provB));
        vm.prank(provA);
        market.acceptJob(id);

        vm.startPrank(provB);
        market.acceptJob(id);
        market.startJob(id, block.timestamp);
        vm.stopPrank();
        vm.warp(block.timestamp + 60);
        vm.expectRevert(_notProvider(id, provA, provB));
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);

        uint256 price = market.getJob(id).pricePerMinute;
        vm.prank(provB);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(provA), 0, "the reclaimed provider was paid");
        assertEq(market.balanceOf(provB), price, "the new provider is paid one minute");
    }

    /// Metering starts at START: the time a job waited placed or queued is not billed.
    function test_provider_cannotBillQueuedTime() public {
        (uint256 id,) = _jobIn(JobStatus.SCHEDULED, alice, ESCROW);
        vm.warp(block.timestamp + START_TIMEOUT - 1); // queued almost an hour
        vm.prank(provA);
        market.startJob(id, block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(provA), PRICE_A, "billed more than the minute it ran");
        assertEq(market.balanceOf(alice), 10_000 * CREDIT - PRICE_A);
    }

    // ------------------------------------------------------------------ oracle

    /// The oracle can place a job only under the terms the customer signed: every forged field
    /// (cheaper resources, a higher max price, another spec) is refused and the job stays PENDING.
    function test_oracle_cannotPlaceWithForgedTerms() public {
        (uint256 id, Terms memory t) = _request(alice, ESCROW);
        bytes16 real = _tag(t);
        Terms[5] memory forged = [t, t, t, t, t];
        forged[0].maxPricePerMinute = t.maxPricePerMinute + 1;
        forged[1].cpus = t.cpus - 1;
        forged[2].memMb = t.memMb / 2;
        forged[3].gpus = t.gpus + 1;
        forged[4].specHash = keccak256("another job");
        for (uint256 i; i < forged.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(IJobMarket.JobTermsMismatch.selector, id, real, _tag(forged[i]))
            );
            vm.prank(oracle);
            market.placeJob(Placement(id, provA, forged[i], type(uint256).max));
        }
        assertEq(uint8(_status(id)), uint8(JobStatus.PENDING));
    }

    /// The oracle does not set the price: a placement records the provider's quote, and a
    /// placement cannot be moved to another provider before its timeout.
    function test_oracle_cannotChoosePriceOrMovePlacedJob() public {
        (uint256 id, Terms memory t) = _request(alice, ESCROW);
        _place(id, t, provB);
        assertEq(market.getJob(id).pricePerMinute, market.quote(provB, t.cpus, t.gpus, t.memMb));

        vm.expectRevert(_unexpected(id, JobStatus.META_SCHEDULED, _bit(JobStatus.PENDING)));
        vm.prank(oracle);
        market.placeJob(Placement(id, provA, t, type(uint256).max));

        vm.warp(block.timestamp + ACCEPT_TIMEOUT - 1);
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(id)), 0, "reclaimed before the accept timeout");
        assertEq(market.getJob(id).provider, provB);
    }

    /// Nobody, the oracle included, can end a running job OUT_OF_CREDITS while its escrow still
    /// pays for the time; a top-up moves that point later, and the old one no longer works.
    function test_oracle_cannotExpireBeforeFundedUntil() public {
        (uint256 id,) = _running(alice, SMALL_ESCROW);
        uint256 until = market.fundedUntil(id);
        vm.warp(until - 1);
        uint256[] memory before = _money(id);
        _expectSkipped(0, id, abi.encodeWithSelector(IJobMarket.JobStillFunded.selector, id, until, until - 1));
        vm.prank(oracle);
        assertEq(market.expireJobs(_ids(id)), 0);
        vm.prank(stranger);
        assertEq(market.expireJobs(_ids(id)), 0);
        assertEq(_money(id), before, "credits moved");

        vm.prank(alice);
        market.topUp(id, SMALL_ESCROW);
        uint256 later = market.fundedUntil(id);
        assertGt(later, until);
        vm.warp(until);
        vm.prank(oracle);
        assertEq(market.expireJobs(_ids(id)), 0, "expired at the funded time from before the top-up");
        vm.warp(later);
        vm.prank(oracle);
        assertEq(market.expireJobs(_ids(id)), 1);
        assertEq(uint8(_status(id)), uint8(JobStatus.OUT_OF_CREDITS));
    }

    /// Every oracle power, used on live jobs, leaves the oracle with nothing and sends no credit
    /// anywhere but to the job's customer or (for time run) its provider; the oracle cannot act
    /// as a customer, a provider or the admin.
    function test_oracle_cannotTakeCredits() public {
        (uint256 placed,) = _jobIn(JobStatus.META_SCHEDULED, alice, ESCROW);
        (uint256 running,) = _running(alice, ESCROW);
        (uint256 pending, Terms memory t) = _request(alice, ESCROW);
        vm.warp(block.timestamp + ACCEPT_TIMEOUT);
        bytes32 adminRole = market.DEFAULT_ADMIN_ROLE();

        vm.startPrank(oracle);
        market.reclaimJobs(_ids(placed));
        market.placeJob(Placement(pending, provA, t, type(uint256).max));
        market.failJobs(_silent(_ids(running)));

        vm.expectRevert(_notCustomer(pending, oracle));
        market.cancelJob(pending);
        vm.expectRevert(_notProvider(pending, oracle, provA));
        market.completeJob(pending, 0, bytes32(0), block.timestamp);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, oracle, adminRole)
        );
        market.withdrawFees(oracle, 1);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.MarketInsufficientBalance.selector, oracle, 0, 1));
        market.withdraw(1);
        vm.stopPrank();

        assertEq(market.balanceOf(oracle), 0, "the oracle holds credits in the market");
        assertEq(credit.balanceOf(oracle), 0, "the oracle holds credits in its wallet");
        assertEq(market.balanceOf(provA), 0, "a provider was paid for time not run");
        // failJobs refunded the running job in full; two escrows are still locked.
        assertEq(market.balanceOf(alice), 10_000 * CREDIT - 2 * ESCROW);
    }

    // ------------------------------------------------------------------ replay and reordering

    /// Sending a transition again (a retried or replayed intent with a fresh nonce) fails with
    /// the status it found, and moves nothing.
    function test_replayedTransition_reverts() public {
        (uint256 id, Terms memory t) = _request(alice, ESCROW);
        _place(id, t, provA);
        vm.expectRevert(_unexpected(id, JobStatus.META_SCHEDULED, _bit(JobStatus.PENDING)));
        vm.prank(oracle);
        market.placeJob(Placement(id, provA, t, type(uint256).max));

        vm.startPrank(provA);
        market.acceptJob(id);
        vm.expectRevert(_unexpected(id, JobStatus.SCHEDULED, _bit(JobStatus.META_SCHEDULED)));
        market.acceptJob(id);
        market.startJob(id, block.timestamp);
        uint256 started = market.getJob(id).since;
        vm.warp(block.timestamp + 60);
        vm.expectRevert(_unexpected(id, JobStatus.RUNNING, _bit(JobStatus.SCHEDULED)));
        market.startJob(id, block.timestamp); // a replayed start must not restart the meter
        assertEq(market.getJob(id).since, started);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        uint256[] memory after_ = _money(id);
        vm.expectRevert(_unexpected(id, JobStatus.FINISHED, _bit(JobStatus.RUNNING)));
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        vm.stopPrank();

        vm.expectRevert(_unexpected(id, JobStatus.FINISHED, LIVE));
        vm.prank(alice);
        market.cancelJob(id);
        _expectSkipped(0, id, _unexpected(id, JobStatus.FINISHED, _bit(JobStatus.RUNNING)));
        assertEq(market.expireJobs(_ids(id)), 0);
        assertEq(_money(id), after_, "a replay moved credits");
        assertEq(market.balanceOf(provA), PRICE_A, "billed more than once");
    }

    /// The same job twice in one batch is applied once; the second item is skipped.
    function test_duplicateBatchItems_applyOnce() public {
        (uint256 id, Terms memory t) = _request(alice, ESCROW);
        Placement[] memory pls = new Placement[](2);
        pls[0] = Placement(id, provA, t, type(uint256).max);
        pls[1] = pls[0];
        vm.prank(oracle);
        assertEq(market.placeJobs(pls), 1);

        ProviderStep[] memory steps = new ProviderStep[](6);
        steps[0] = ProviderStep(id, ProviderAction.ACCEPT, 0, bytes32(0), block.timestamp);
        steps[1] = ProviderStep(id, ProviderAction.ACCEPT, 0, bytes32(0), block.timestamp);
        steps[2] = ProviderStep(id, ProviderAction.START, 0, bytes32(0), block.timestamp);
        steps[3] = ProviderStep(id, ProviderAction.START, 0, bytes32(0), block.timestamp);
        vm.prank(provA);
        // The two COMPLETE items are left empty (job 0 does not exist) and skipped too.
        assertEq(market.providerBatch(steps), 2);

        vm.warp(block.timestamp + 60);
        steps = new ProviderStep[](2);
        steps[0] = ProviderStep(id, ProviderAction.COMPLETE, 0, bytes32(0), block.timestamp);
        steps[1] = steps[0];
        vm.prank(provA);
        assertEq(market.providerBatch(steps), 1);
        assertEq(market.balanceOf(provA), PRICE_A, "billed twice");

        (uint256 running,) = _running(bob, SMALL_ESCROW);
        vm.warp(market.fundedUntil(running));
        assertEq(market.expireJobs(_ids(running, running)), 1);
        (uint256 silent,) = _running(bob, SMALL_ESCROW);
        vm.prank(oracle);
        assertEq(market.failJobs(_silent(_ids(silent, silent))), 1);
        assertEq(market.balanceOf(provA), PRICE_A + SMALL_ESCROW, "an escrow was paid twice");
    }

    /// Steps out of order are refused: a provider cannot skip accept, complete before start, or
    /// give back a running job (which would end its metering unbilled and let it be placed again).
    function test_reorderedTransitions_revert() public {
        (uint256 id,) = _jobIn(JobStatus.META_SCHEDULED, alice, ESCROW);
        vm.startPrank(provA);
        vm.expectRevert(_unexpected(id, JobStatus.META_SCHEDULED, _bit(JobStatus.SCHEDULED)));
        market.startJob(id, block.timestamp);
        vm.expectRevert(_unexpected(id, JobStatus.META_SCHEDULED, _bit(JobStatus.RUNNING)));
        market.completeJob(id, 0, bytes32(0), block.timestamp);

        // A batch in the wrong order: START is skipped, ACCEPT applies, nothing runs.
        ProviderStep[] memory steps = new ProviderStep[](2);
        steps[0] = ProviderStep(id, ProviderAction.START, 0, bytes32(0), block.timestamp);
        steps[1] = ProviderStep(id, ProviderAction.ACCEPT, 0, bytes32(0), block.timestamp);
        assertEq(market.providerBatch(steps), 1);
        assertEq(uint8(_status(id)), uint8(JobStatus.SCHEDULED));

        market.startJob(id, block.timestamp);
        vm.expectRevert(_unexpected(id, JobStatus.RUNNING, PLACED));
        market.refuseJob(id, "too late");
        vm.expectRevert(_unexpected(id, JobStatus.RUNNING, _bit(JobStatus.META_SCHEDULED)));
        market.acceptJob(id);
        vm.stopPrank();
        assertEq(uint8(_status(id)), uint8(JobStatus.RUNNING));
    }

    /// A permit signature used once cannot deposit a second time (its nonce is spent and the
    /// allowance it set was used up).
    function test_permitReplay_doesNotDepositTwice() public {
        (address carol, uint256 pk) = makeAddrAndKey("carol");
        vm.prank(admin);
        credit.mint(carol, 100 * CREDIT);
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 structHash =
            keccak256(abi.encode(PERMIT_TYPEHASH, carol, address(market), 50 * CREDIT, credit.nonces(carol), deadline));
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(pk, keccak256(abi.encodePacked("\x19\x01", credit.DOMAIN_SEPARATOR(), structHash)));
        vm.prank(carol);
        market.depositWithPermit(50 * CREDIT, deadline, v, r, s);

        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 50 * CREDIT)
        );
        vm.prank(carol);
        market.depositWithPermit(50 * CREDIT, deadline, v, r, s);
        assertEq(market.balanceOf(carol), 50 * CREDIT);
        assertEq(credit.balanceOf(carol), 50 * CREDIT);
    }

    // ------------------------------------------------------------------ admin

    /// A fee change binds only jobs placed after it: jobs already placed, queued or running keep
    /// the fee they were placed with, even at the maximum.
    function test_feeChange_doesNotAffectPlacedJob() public {
        vm.prank(admin);
        market.setFee(500);
        (uint256 metaScheduled,) = _jobIn(JobStatus.META_SCHEDULED, alice, ESCROW);
        (uint256 scheduled,) = _jobIn(JobStatus.SCHEDULED, alice, ESCROW);
        (uint256 running,) = _running(alice, ESCROW);
        uint16 maxFee = uint16(market.MAX_FEE_BPS());
        vm.prank(admin);
        market.setFee(maxFee);

        assertEq(market.getJob(metaScheduled).feeBps, 500);
        assertEq(market.getJob(scheduled).feeBps, 500);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(running, 0, bytes32(0), block.timestamp);
        uint256 cost = PRICE_A * 10;
        assertEq(market.accruedFees(), (cost * 500) / 10_000, "fee taken at the new rate");
        assertEq(market.balanceOf(provA), cost - (cost * 500) / 10_000);
    }

    /// The admin's only way to take credits is withdrawFees, bounded by the fees accrued: the
    /// customers' balances and escrows the market holds are out of its reach.
    function test_admin_cannotWithdrawMoreThanAccruedFees() public {
        (uint256 id,) = _running(alice, ESCROW);
        assertEq(market.accruedFees(), 0);
        assertGt(credit.balanceOf(address(market)), 0);
        uint256[] memory before = _money(id);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.MarketInsufficientBalance.selector, address(market), 0, 1));
        vm.prank(admin);
        market.withdrawFees(admin, 1);
        assertEq(_money(id), before, "credits moved");
    }

    /// Banning a provider stops new placements; it does not seize what the provider earned, nor
    /// stop its running job from being paid.
    function test_admin_banDoesNotSeizeEarnings() public {
        (uint256 id,) = _running(alice, ESCROW);
        vm.warp(block.timestamp + 60);
        vm.prank(admin);
        market.banProvider(provA);
        vm.startPrank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        market.withdraw(PRICE_A);
        vm.stopPrank();
        assertEq(credit.balanceOf(provA), PRICE_A);
    }

    // ------------------------------------------------------------------ anyone

    /// Anyone may end a job whose escrow is spent, and gains nothing by it.
    function test_keeper_expiringGainsNothing() public {
        (uint256 id,) = _running(alice, SMALL_ESCROW);
        vm.warp(market.fundedUntil(id));
        vm.prank(stranger);
        assertEq(market.expireJobs(_ids(id)), 1);
        assertEq(market.balanceOf(stranger), 0);
        assertEq(credit.balanceOf(stranger), 0);
        assertEq(market.balanceOf(provA), SMALL_ESCROW, "the provider is paid the escrow");
    }
}
