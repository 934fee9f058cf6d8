// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Vm} from "forge-std/Test.sol";

import {Fixture} from "./utils/Fixture.sol";
import {IJobMarket, JobStatus, Placement, Prices, Terms} from "../src/interfaces/IJobMarket.sol";

/// @notice Fuzz tests of the billing arithmetic, driven through the real contract: for any price
/// (up to uint40), escrow (up to uint96), elapsed time and fee (up to MAX_FEE_BPS), ending a job
/// never reverts, splits the escrow exactly (paid + fee + refunded == escrow, no credit created or
/// lost), bills exactly min(escrow, floor(price * elapsed / 60)) (so rounding costs the customer
/// nothing and the provider less than one unit), and OUT_OF_CREDITS is allowed exactly at
/// fundedUntil and not one second before.
contract BillingFuzzTest is Fixture {
    address internal payer = makeAddr("payer");
    address internal seller = makeAddr("seller");

    struct Split {
        uint256 paid;
        uint256 fee;
        uint256 refunded;
        JobStatus to;
    }

    struct Snapshot {
        uint256 held;
        uint256 payer;
        uint256 seller;
        uint256 fees;
    }

    /// @dev A job of `escrow` RUNNING on `seller`, whose price for it is exactly `price`/minute.
    function _runningAt(uint256 price, uint256 escrow, uint256 feeBps) internal returns (uint256 id) {
        vm.prank(admin);
        market.setFee(uint16(feeBps));
        _provider(seller, Prices(uint40(price), 0, 0));
        _fund(payer, escrow);
        uint256 maxPrice = price == 0 ? 1 : price;
        Terms memory t = Terms(keccak256(spec), 1, 0, 0, maxPrice);
        vm.prank(payer);
        id = market.requestJob(1, 0, 0, maxPrice, escrow, spec);
        vm.prank(oracle);
        market.placeJob(_placement(id, seller, t));
        vm.startPrank(seller);
        market.acceptJob(id);
        market.startJob(id, block.timestamp);
        vm.stopPrank();
        assertEq(market.getJob(id).pricePerMinute, price);
    }

    function _placement(uint256 id, address p, Terms memory t) internal pure returns (Placement memory) {
        return Placement(id, p, t, type(uint256).max);
    }

    function _snap() internal view returns (Snapshot memory) {
        return Snapshot(
            credit.balanceOf(address(market)), market.balanceOf(payer), market.balanceOf(seller), market.accruedFees()
        );
    }

    function _ended(Vm.Log[] memory logs, uint256 id) internal pure returns (Split memory s) {
        uint256 found;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == IJobMarket.JobEnded.selector && uint256(logs[i].topics[1]) == id) {
                JobStatus from;
                int256 exitCode;
                (from, s.to, s.paid, s.fee, s.refunded, exitCode) =
                    abi.decode(logs[i].data, (JobStatus, JobStatus, uint256, uint256, uint256, int256));
                ++found;
            }
        }
        assertEq(found, 1, "exactly one JobEnded");
    }

    /// @dev The split is exact, matches the balances, and bills what the arithmetic says.
    function _checkSplit(Split memory s, Snapshot memory before, uint256 escrow, uint256 expectedCost, uint256 feeBps)
        internal
        view
    {
        assertEq(s.paid + s.fee + s.refunded, escrow, "escrow split exactly");
        assertEq(s.paid + s.fee, expectedCost, "billed amount");
        assertEq(s.fee, expectedCost * feeBps / 10_000, "fee");
        Snapshot memory afterwards = _snap();
        assertEq(afterwards.held, before.held, "no tokens moved");
        assertEq(afterwards.payer, before.payer + s.refunded, "refund credited");
        assertEq(afterwards.seller, before.seller + s.paid, "earnings credited");
        assertEq(afterwards.fees, before.fees + s.fee, "fee accrued");
    }

    function _bounds(uint256 price, uint256 escrow, uint256 elapsed, uint256 feeBps)
        internal
        view
        returns (uint256, uint256, uint256, uint256)
    {
        price = bound(price, 0, type(uint40).max);
        escrow = bound(escrow, 1, type(uint96).max);
        elapsed = bound(elapsed, 0, 2_000_000_000); // timestamps stay within uint32
        feeBps = bound(feeBps, 0, market.MAX_FEE_BPS());
        return (price, escrow, elapsed, feeBps);
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    // ------------------------------------------------------------------ complete

    function testFuzz_complete_billsFloorOfPriceTimesElapsedCappedByEscrow(
        uint256 price,
        uint256 escrow,
        uint256 elapsed,
        uint256 feeBps,
        int32 exitCode
    ) public {
        (price, escrow, elapsed, feeBps) = _bounds(price, escrow, elapsed, feeBps);
        uint256 id = _runningAt(price, escrow, feeBps);
        vm.warp(block.timestamp + elapsed);
        Snapshot memory before = _snap();
        vm.recordLogs();
        vm.prank(seller);
        market.completeJob(id, exitCode, bytes32(0), block.timestamp);
        Split memory s = _ended(vm.getRecordedLogs(), id);

        uint256 full = price * elapsed / 60;
        uint256 cost = _min(escrow, full);
        _checkSplit(s, before, escrow, cost, feeBps);
        // Rounding: never above price x elapsed, and below it by less than one unit unless capped.
        assertLe((s.paid + s.fee) * 60, price * elapsed);
        if (cost < escrow) assertGt((s.paid + s.fee + 1) * 60, price * elapsed);
        assertEq(uint8(s.to), uint8(exitCode == 0 ? JobStatus.FINISHED : JobStatus.FAILED));
        assertEq(uint8(_status(id)), uint8(s.to));
    }

    /// @dev The fee is the one in force when the job was placed, whatever the admin sets later.
    function testFuzz_complete_feeFixedAtPlacement(uint256 price, uint256 escrow, uint256 elapsed, uint256 feeBps, uint256 laterBps)
        public
    {
        (price, escrow, elapsed, feeBps) = _bounds(price, escrow, elapsed, feeBps);
        laterBps = bound(laterBps, 0, market.MAX_FEE_BPS());
        uint256 id = _runningAt(price, escrow, feeBps);
        vm.prank(admin);
        market.setFee(uint16(laterBps));
        vm.warp(block.timestamp + elapsed);
        Snapshot memory before = _snap();
        vm.recordLogs();
        vm.prank(seller);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        _checkSplit(_ended(vm.getRecordedLogs(), id), before, escrow, _min(escrow, price * elapsed / 60), feeBps);
    }

    // ------------------------------------------------------------------ cancel

    function testFuzz_cancelRunning_billsElapsedAndRefundsTheRest(
        uint256 price,
        uint256 escrow,
        uint256 elapsed,
        uint256 feeBps
    ) public {
        (price, escrow, elapsed, feeBps) = _bounds(price, escrow, elapsed, feeBps);
        uint256 id = _runningAt(price, escrow, feeBps);
        vm.warp(block.timestamp + elapsed);
        Snapshot memory before = _snap();
        vm.recordLogs();
        vm.prank(payer);
        market.cancelJob(id);
        Split memory s = _ended(vm.getRecordedLogs(), id);
        _checkSplit(s, before, escrow, _min(escrow, price * elapsed / 60), feeBps);
        assertLe((s.paid + s.fee) * 60, price * elapsed);
        assertEq(uint8(s.to), uint8(JobStatus.CANCELLED));
    }

    function testFuzz_cancelBeforeRunning_refundsAll(uint256 escrow, uint256 waited, uint8 statusSeed) public {
        escrow = bound(escrow, 1, type(uint96).max);
        waited = bound(waited, 0, 2_000_000_000);
        JobStatus from = JobStatus(bound(statusSeed, 0, 2));
        _fund(payer, escrow);
        vm.prank(admin);
        market.setFee(2_000);
        uint256 balanceBefore = market.balanceOf(payer);
        (uint256 id,) = _jobIn(from, payer, escrow);
        vm.warp(block.timestamp + waited);
        Snapshot memory before = _snap();
        vm.recordLogs();
        vm.prank(payer);
        market.cancelJob(id);
        Split memory s = _ended(vm.getRecordedLogs(), id);
        assertEq(s.refunded, escrow);
        assertEq(s.paid + s.fee, 0);
        assertEq(market.balanceOf(payer), balanceBefore);
        assertEq(credit.balanceOf(address(market)), before.held);
    }

    // ------------------------------------------------------------------ failJobs

    function testFuzz_failJobs_refundsAll(uint256 price, uint256 escrow, uint256 elapsed, uint256 feeBps) public {
        (price, escrow, elapsed, feeBps) = _bounds(price, escrow, elapsed, feeBps);
        uint256 id = _runningAt(price, escrow, feeBps);
        vm.warp(block.timestamp + elapsed);
        Snapshot memory before = _snap();
        vm.recordLogs();
        vm.prank(oracle);
        assertEq(market.failJobs(_silent(_ids(id))), 1);
        _checkSplit(_ended(vm.getRecordedLogs(), id), before, escrow, 0, feeBps);
    }

    // ------------------------------------------------------------------ expire

    function testFuzz_expire_exactlyAtFundedUntil(uint256 price, uint256 escrow, uint256 feeBps) public {
        (price, escrow,, feeBps) = _bounds(price, escrow, 0, feeBps);
        price = bound(price, 1, type(uint40).max);
        uint256 id = _runningAt(price, escrow, feeBps);
        uint256 start = block.timestamp;
        uint256 until = start + (escrow * 60 + price - 1) / price; // first second the escrow is spent
        assertEq(market.fundedUntil(id), until);
        assertGe(price * (until - start), escrow * 60, "spent at fundedUntil");
        assertLt(price * (until - 1 - start), escrow * 60, "not spent a second before");

        vm.warp(until - 1);
        _expectSkipped(0, id, abi.encodeWithSelector(IJobMarket.JobStillFunded.selector, id, until, until - 1));
        assertEq(market.expireJobs(_ids(id)), 0);
        assertEq(uint8(_status(id)), uint8(JobStatus.RUNNING));

        vm.warp(until);
        Snapshot memory before = _snap();
        vm.recordLogs();
        vm.prank(stranger);
        assertEq(market.expireJobs(_ids(id)), 1);
        Split memory s = _ended(vm.getRecordedLogs(), id);
        _checkSplit(s, before, escrow, escrow, feeBps);
        assertEq(s.refunded, 0);
        assertEq(uint8(s.to), uint8(JobStatus.OUT_OF_CREDITS));
    }

    /// @dev A second before fundedUntil the job still has escrow left: completing it then refunds something.
    function testFuzz_expire_notBeforeEscrowIsSpent(uint256 price, uint256 escrow, uint256 early) public {
        (price, escrow,,) = _bounds(price, escrow, 0, 0);
        price = bound(price, 1, type(uint40).max);
        uint256 id = _runningAt(price, escrow, 0);
        uint256 until = market.fundedUntil(id);
        early = bound(early, block.timestamp, until - 1);
        vm.warp(early);
        _expectSkipped(0, id, abi.encodeWithSelector(IJobMarket.JobStillFunded.selector, id, until, early));
        market.expireJobs(_ids(id));
        uint256 before = market.balanceOf(payer);
        vm.prank(seller);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertGt(market.balanceOf(payer), before, "escrow was not spent yet");
    }

    function testFuzz_topUp_extendsFundedUntil(uint256 price, uint256 escrow, uint256 extra, uint256 elapsed) public {
        price = bound(price, 1, type(uint40).max);
        escrow = bound(escrow, 1, type(uint96).max - 1);
        extra = bound(extra, 1, type(uint96).max - escrow);
        uint256 id = _runningAt(price, escrow, 0);
        uint256 start = block.timestamp;
        uint256 funded = (escrow * 60 + price - 1) / price;
        elapsed = bound(elapsed, 0, funded - 1); // while the escrow lasts
        vm.warp(start + elapsed);
        _fund(payer, extra);
        vm.prank(payer);
        market.topUp(id, extra);
        uint256 until = start + ((escrow + extra) * 60 + price - 1) / price;
        assertEq(market.fundedUntil(id), until);
        assertGe(until, start + funded);
    }

    /// @dev Once the escrow is spent, no top-up (of any size) buys the run past it: refused,
    /// nothing moves, and the job may be expired.
    function testFuzz_topUp_refusedOnceTheEscrowIsSpent(uint256 price, uint256 escrow, uint256 extra, uint256 late)
        public
    {
        price = bound(price, 1, type(uint40).max);
        escrow = bound(escrow, 1, type(uint96).max - 1);
        extra = bound(extra, 1, type(uint96).max - escrow);
        uint256 id = _runningAt(price, escrow, 0);
        uint256 until = block.timestamp + (escrow * 60 + price - 1) / price;
        vm.warp(bound(late, until, until + 2_000_000_000));
        _fund(payer, extra);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobEscrowSpent.selector, id, until));
        vm.prank(payer);
        market.topUp(id, extra);
        assertEq(market.balanceOf(payer), extra, "nothing moved");
        assertEq(market.expireJobs(_ids(id)), 1);
    }
}
