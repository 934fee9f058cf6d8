// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {Fixture} from "./utils/Fixture.sol";
import {
    IJobMarket,
    JobStatus,
    Placement,
    ProviderAction,
    ProviderStatus,
    ProviderStep,
    Terms
} from "../src/interfaces/IJobMarket.sol";

/// @notice Admin settings (oracle, fee, timeouts, pause) and the batch entry points: a bad item
/// is skipped with `BatchItemSkipped(index, jobId, error)` carrying the exact error bytes, and
/// every other item is applied.
contract JobMarketAdminTest is Fixture {
    function _adminRevert(address caller) internal view returns (bytes memory) {
        return abi.encodeWithSelector(
            IAccessControl.AccessControlUnauthorizedAccount.selector, caller, market.DEFAULT_ADMIN_ROLE()
        );
    }

    // ------------------------------------------------------------------ settings

    function test_constructor_setsConfig() public view {
        (address o, uint256 fee, bool paused, uint256 acceptT, uint256 startT) = market.config();
        assertEq(o, oracle);
        assertEq(fee, 0);
        assertFalse(paused);
        assertEq(acceptT, ACCEPT_TIMEOUT);
        assertEq(startT, START_TIMEOUT);
        assertEq(address(market.credit()), address(credit));
        assertTrue(market.hasRole(market.DEFAULT_ADMIN_ROLE(), admin));
        assertEq(market.jobCount(), 0);
    }

    function test_setFee_updatesAndEmits() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.FeeChanged(0, 2_000);
        vm.prank(admin);
        market.setFee(2_000);
        (, uint256 fee,,,) = market.config();
        assertEq(fee, 2_000);
    }

    function test_setFee_revertsAboveMax() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.MarketFeeTooHigh.selector, 2_001, 2_000));
        vm.prank(admin);
        market.setFee(2_001);
    }

    function test_setTimeouts_updatesAndEmits() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.TimeoutsChanged(60, 120);
        vm.prank(admin);
        market.setTimeouts(60, 120);
        (,,, uint256 acceptT, uint256 startT) = market.config();
        assertEq(acceptT, 60);
        assertEq(startT, 120);
    }

    function test_setOracle_movesTheRole() public {
        address next = makeAddr("nextOracle");
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.OracleChanged(oracle, next);
        vm.prank(admin);
        market.setOracle(next);
        (uint256 id, Terms memory t) = _request(alice, CREDIT);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.MarketNotOracle.selector, oracle, next));
        vm.prank(oracle);
        market.placeJob(Placement(id, provA, t, type(uint256).max));
        vm.prank(next);
        market.placeJob(Placement(id, provA, t, type(uint256).max));
    }

    function test_pause_stopsRequestsOnly() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        (uint256 queued, Terms memory t) = _request(bob, CREDIT);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.RequestsPaused(admin);
        vm.prank(admin);
        market.pause();
        (,, bool paused,,) = market.config();
        assertTrue(paused);
        vm.expectRevert(IJobMarket.MarketRequestsPaused.selector);
        vm.prank(alice);
        market.requestJob(1, 0, 0, CREDIT, CREDIT, spec);
        // Everything else goes on.
        _place(queued, t, provB);
        vm.warp(block.timestamp + 60);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        vm.prank(provA);
        market.withdraw(PRICE_A);
        vm.prank(admin);
        credit.mint(alice, CREDIT);
        vm.prank(alice);
        market.deposit(CREDIT);
    }

    function test_unpause_acceptsRequestsAgain() public {
        vm.prank(admin);
        market.pause();
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.RequestsUnpaused(admin);
        vm.prank(admin);
        market.unpause();
        _request(alice, CREDIT);
    }

    function test_adminSettings_revertIfNotAdmin() public {
        address[6] memory callers = [oracle, provA, provB, alice, bob, stranger];
        for (uint256 i; i < callers.length; ++i) {
            bytes memory err = _adminRevert(callers[i]);
            vm.startPrank(callers[i]);
            vm.expectRevert(err);
            market.setFee(1);
            vm.expectRevert(err);
            market.setTimeouts(1, 1);
            vm.expectRevert(err);
            market.setOracle(callers[i]);
            vm.expectRevert(err);
            market.pause();
            vm.expectRevert(err);
            market.unpause();
            vm.expectRevert(err);
            market.withdrawFees(callers[i], 1);
            vm.stopPrank();
        }
    }

    // ------------------------------------------------------------------ batches

    function test_placeJobs_skipsBadItemsAndPlacesTheRest() public {
        (uint256 a, Terms memory ta) = _request(alice, CREDIT);
        (uint256 b, Terms memory tb) = _request(bob, CREDIT);
        (uint256 c, Terms memory tc) = _request(alice, CREDIT);
        Terms memory wrong = _terms(1, 0, 0, CREDIT);
        Placement[] memory batch = new Placement[](5);
        batch[0] = Placement(a, provA, ta, type(uint256).max);
        batch[1] = Placement(b, provA, wrong, type(uint256).max);
        batch[2] = Placement(c, stranger, tc, type(uint256).max);
        batch[3] = Placement(a, provB, ta, type(uint256).max); // placed a moment ago, in this very batch
        batch[4] = Placement(c, provB, tc, type(uint256).max);

        _expectSkipped(
            1,
            b,
            abi.encodeWithSelector(
                IJobMarket.JobTermsMismatch.selector, b, _tag(tb), _tag(wrong)
            )
        );
        _expectSkipped(
            2, c, abi.encodeWithSelector(IJobMarket.ProviderNotApproved.selector, stranger, ProviderStatus.NONE)
        );
        _expectSkipped(3, a, _unexpected(a, JobStatus.META_SCHEDULED, _bit(JobStatus.PENDING)));
        vm.prank(oracle);
        assertEq(market.placeJobs(batch), 2);
        assertEq(market.getJob(a).provider, provA);
        assertEq(uint8(_status(b)), uint8(JobStatus.PENDING));
        assertEq(market.getJob(c).provider, provB);
    }

    function test_placeJobs_emitsOnePlacedEventPerPlacedJob() public {
        (uint256 a, Terms memory ta) = _request(alice, CREDIT);
        (uint256 b, Terms memory tb) = _request(bob, CREDIT);
        Placement[] memory batch = new Placement[](2);
        batch[0] = Placement(a, provA, ta, type(uint256).max);
        batch[1] = Placement(b, provB, tb, type(uint256).max);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobPlaced(a, provA, JobStatus.PENDING, JobStatus.META_SCHEDULED, PRICE_A);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.JobPlaced(b, provB, JobStatus.PENDING, JobStatus.META_SCHEDULED, 8_800);
        vm.prank(oracle);
        assertEq(market.placeJobs(batch), 2);
    }

    function test_providerBatch_skipsBadItemsAndAppliesTheRest() public {
        (uint256 placed,) = _jobIn(JobStatus.META_SCHEDULED, alice, CREDIT);
        (uint256 queued,) = _jobIn(JobStatus.SCHEDULED, alice, CREDIT);
        (uint256 running,) = _jobIn(JobStatus.RUNNING, bob, CREDIT);
        (uint256 failing,) = _jobIn(JobStatus.RUNNING, bob, CREDIT);
        (uint256 other, Terms memory to) = _request(alice, CREDIT);
        _place(other, to, provB);
        vm.warp(block.timestamp + 60);

        ProviderStep[] memory steps = new ProviderStep[](7);
        steps[0] = ProviderStep(placed, ProviderAction.ACCEPT, 0, bytes32(0), block.timestamp);
        steps[1] = ProviderStep(queued, ProviderAction.START, 0, bytes32(0), block.timestamp);
        steps[2] = ProviderStep(running, ProviderAction.COMPLETE, 0, bytes32(0), block.timestamp);
        steps[3] = ProviderStep(other, ProviderAction.ACCEPT, 0, bytes32(0), block.timestamp); // provB's job
        steps[4] = ProviderStep(running, ProviderAction.COMPLETE, 0, bytes32(0), block.timestamp); // already ended above
        steps[5] = ProviderStep(failing, ProviderAction.COMPLETE, 2, bytes32(0), block.timestamp);
        steps[6] = ProviderStep(999, ProviderAction.START, 0, bytes32(0), block.timestamp);

        _expectSkipped(
            3, other, abi.encodeWithSelector(IJobMarket.JobNotAssignedProvider.selector, other, provA, provB)
        );
        _expectSkipped(4, running, _unexpected(running, JobStatus.FINISHED, _bit(JobStatus.RUNNING)));
        _expectSkipped(6, 999, abi.encodeWithSelector(IJobMarket.JobNotFound.selector, 999));
        vm.prank(provA);
        assertEq(market.providerBatch(steps), 4);
        assertEq(uint8(_status(placed)), uint8(JobStatus.SCHEDULED));
        assertEq(uint8(_status(queued)), uint8(JobStatus.RUNNING));
        assertEq(uint8(_status(running)), uint8(JobStatus.FINISHED));
        assertEq(uint8(_status(failing)), uint8(JobStatus.FAILED));
        assertEq(uint8(_status(other)), uint8(JobStatus.META_SCHEDULED));
        assertEq(market.balanceOf(provA), 2 * PRICE_A);
    }

    function test_providerBatch_byStrangerSkipsEverything() public {
        (uint256 placed,) = _jobIn(JobStatus.META_SCHEDULED, alice, CREDIT);
        ProviderStep[] memory steps = new ProviderStep[](1);
        steps[0] = ProviderStep(placed, ProviderAction.ACCEPT, 0, bytes32(0), block.timestamp);
        _expectSkipped(
            0, placed, abi.encodeWithSelector(IJobMarket.JobNotAssignedProvider.selector, placed, stranger, provA)
        );
        vm.prank(stranger);
        assertEq(market.providerBatch(steps), 0);
    }

    function test_reclaimJobs_skipsBadItemsAndReclaimsTheRest() public {
        (uint256 late,) = _jobIn(JobStatus.META_SCHEDULED, alice, CREDIT);
        vm.warp(block.timestamp + ACCEPT_TIMEOUT);
        (uint256 fresh,) = _jobIn(JobStatus.META_SCHEDULED, alice, CREDIT);
        (uint256 running,) = _jobIn(JobStatus.RUNNING, alice, CREDIT);
        uint256 deadline = block.timestamp + ACCEPT_TIMEOUT;
        _expectSkipped(
            1, fresh, abi.encodeWithSelector(IJobMarket.JobTimeoutNotReached.selector, fresh, deadline, block.timestamp)
        );
        _expectSkipped(2, running, _unexpected(running, JobStatus.RUNNING, PLACED));
        vm.prank(oracle);
        assertEq(market.reclaimJobs(_ids(late, fresh, running)), 1);
        assertEq(uint8(_status(late)), uint8(JobStatus.PENDING));
        assertEq(uint8(_status(fresh)), uint8(JobStatus.META_SCHEDULED));
    }

    function test_failJobs_skipsBadItemsAndFailsTheRest() public {
        (uint256 a,) = _jobIn(JobStatus.RUNNING, alice, CREDIT);
        (uint256 queued,) = _jobIn(JobStatus.SCHEDULED, alice, CREDIT);
        (uint256 b,) = _jobIn(JobStatus.RUNNING, bob, CREDIT);
        _expectSkipped(1, queued, _unexpected(queued, JobStatus.SCHEDULED, _bit(JobStatus.RUNNING)));
        vm.prank(oracle);
        assertEq(market.failJobs(_silent(_ids(a, queued, b))), 2);
        assertEq(uint8(_status(a)), uint8(JobStatus.FAILED));
        assertEq(uint8(_status(b)), uint8(JobStatus.FAILED));
        assertEq(market.balanceOf(alice), 10_000 * CREDIT - CREDIT); // queued's escrow still locked
        assertEq(market.balanceOf(bob), 10_000 * CREDIT);
    }

    function test_failJobs_revertsIfNotOracle() public {
        (uint256 a,) = _jobIn(JobStatus.RUNNING, alice, CREDIT);
        vm.expectRevert(_notOracle(admin));
        vm.prank(admin);
        market.failJobs(_silent(_ids(a)));
    }

    function test_expireJobs_skipsFundedJobsAndExpiresTheRest() public {
        (uint256 dry,) = _jobIn(JobStatus.RUNNING, alice, SMALL_ESCROW);
        (uint256 funded,) = _jobIn(JobStatus.RUNNING, bob, 5 * CREDIT);
        uint256 fundedUntil = market.fundedUntil(funded);
        vm.warp(market.fundedUntil(dry));
        _expectSkipped(
            1, funded, abi.encodeWithSelector(IJobMarket.JobStillFunded.selector, funded, fundedUntil, block.timestamp)
        );
        _expectSkipped(2, dry, _unexpected(dry, JobStatus.OUT_OF_CREDITS, _bit(JobStatus.RUNNING)));
        vm.prank(stranger);
        assertEq(market.expireJobs(_ids(dry, funded, dry)), 1);
        assertEq(uint8(_status(dry)), uint8(JobStatus.OUT_OF_CREDITS));
        assertEq(uint8(_status(funded)), uint8(JobStatus.RUNNING));
    }

    function test_batches_emptyDoNothing() public {
        vm.startPrank(oracle);
        assertEq(market.placeJobs(new Placement[](0)), 0);
        assertEq(market.reclaimJobs(new uint256[](0)), 0);
        assertEq(market.failJobs(_silent(new uint256[](0))), 0);
        vm.stopPrank();
        assertEq(market.expireJobs(new uint256[](0)), 0);
        assertEq(market.providerBatch(new ProviderStep[](0)), 0);
    }
}
