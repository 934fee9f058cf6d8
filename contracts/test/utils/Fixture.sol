// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Test, Vm} from "forge-std/Test.sol";

import {Credit} from "../../src/Credit.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {IJobMarket, Hardware, Prices, Terms, Placement, SilentJob, JobStatus} from "../../src/interfaces/IJobMarket.sol";

/// @notice Shared deploy fixture: a credit token, a market, funded customers and approved providers.
abstract contract Fixture is Test {
    Credit internal credit;
    JobMarket internal market;

    address internal admin = makeAddr("admin");
    address internal oracle = makeAddr("oracle");
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");
    address internal provA = makeAddr("provA");
    address internal provB = makeAddr("provB");
    address internal stranger = makeAddr("stranger");

    uint32 internal constant ACCEPT_TIMEOUT = 300;
    uint32 internal constant START_TIMEOUT = 3600;
    uint256 internal constant CREDIT = 1e6;

    // A 300-byte spec, like a real one.
    bytes internal spec = bytes(
        '{"command":["python","train.py","--epochs","10"],"env":{"OMP_NUM_THREADS":"4"},"labels":["x86_64"],'
        '"name":"train-resnet","resources":{"cpus_per_task":4,"gpus":0,"mem_per_cpu_mb":2048,"tasks":1},'
        '"time_limit_minutes":60,"workdir":"/scratch/alice/run-0001","note":"baseline run of the model"}'
    );

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        credit = new Credit(admin);
        market = new JobMarket(credit, admin, oracle, ACCEPT_TIMEOUT, START_TIMEOUT);
        _fund(alice, 10_000 * CREDIT);
        _fund(bob, 10_000 * CREDIT);
        _provider(provA, Prices(1_000, 50_000, 100)); // 0.001 credit per CPU-minute
        _provider(provB, Prices(2_000, 40_000, 100));
    }

    function _fund(address who, uint256 amount) internal {
        vm.prank(admin);
        credit.mint(who, amount);
        vm.startPrank(who);
        credit.approve(address(market), type(uint256).max);
        market.deposit(amount);
        vm.stopPrank();
    }

    function _provider(address who, Prices memory prices) internal {
        string[] memory labels = new string[](1);
        labels[0] = "x86_64";
        vm.prank(who);
        market.registerProvider(Hardware(4, 256, 8, 1_048_576), prices, labels);
        vm.prank(admin);
        market.approveProvider(who);
    }

    function _terms(uint32 cpus, uint32 gpus, uint32 memMb, uint256 maxPrice) internal view returns (Terms memory) {
        return Terms(keccak256(spec), cpus, gpus, memMb, maxPrice);
    }

    /// @dev Requests a 4-CPU, 8 GB job as `who`, with `escrow` credits and a generous max price.
    function _request(address who, uint256 escrow) internal returns (uint256 jobId, Terms memory t) {
        t = _terms(4, 0, 8192, 1 * CREDIT);
        vm.prank(who);
        jobId = market.requestJob(t.cpus, t.gpus, t.memMb, t.maxPricePerMinute, escrow, spec);
    }

    /// @dev What the contract stores of a job's terms.
    function _tag(Terms memory t) internal pure returns (bytes16) {
        return bytes16(keccak256(abi.encode(t)));
    }

    function _place(uint256 jobId, Terms memory t, address provider) internal {
        vm.prank(oracle);
        market.placeJob(Placement(jobId, provider, t, type(uint256).max));
    }

    /// @dev A job RUNNING on provA, started now.
    function _running(address who, uint256 escrow) internal returns (uint256 jobId, Terms memory t) {
        (jobId, t) = _request(who, escrow);
        _place(jobId, t, provA);
        vm.startPrank(provA);
        market.acceptJob(jobId);
        market.startJob(jobId, block.timestamp);
        vm.stopPrank();
    }

    function _status(uint256 jobId) internal view returns (JobStatus) {
        return market.getJob(jobId).status;
    }

    // ------------------------------------------------------------ helpers for the test suites

    /// @dev provA's price for the standard job of `_request`: 4 CPUs x 1,000 + 8 GB x 100 = 4,800/min.
    uint256 internal constant PRICE_A = 4_800;
    /// @dev 0.1 credit: provA's standard job runs dry after 1,250 s, well inside START_TIMEOUT.
    uint256 internal constant SMALL_ESCROW = 100_000;

    /// @dev A job of `who`'s in status `s`; every non-PENDING job (terminal ones included) went
    /// through provA: CANCELLED was cancelled while SCHEDULED, FINISHED/FAILED completed after a
    /// minute with exit code 0/1, OUT_OF_CREDITS expired at its fundedUntil.
    function _jobIn(JobStatus s, address who, uint256 escrow) internal returns (uint256 jobId, Terms memory t) {
        (jobId, t) = _request(who, escrow);
        if (s == JobStatus.PENDING) return (jobId, t);
        _place(jobId, t, provA);
        if (s == JobStatus.META_SCHEDULED) return (jobId, t);
        vm.prank(provA);
        market.acceptJob(jobId);
        if (s == JobStatus.SCHEDULED) return (jobId, t);
        if (s == JobStatus.CANCELLED) {
            vm.prank(who);
            market.cancelJob(jobId);
            return (jobId, t);
        }
        vm.prank(provA);
        market.startJob(jobId, block.timestamp);
        if (s == JobStatus.RUNNING) return (jobId, t);
        if (s == JobStatus.OUT_OF_CREDITS) {
            vm.warp(market.fundedUntil(jobId));
            market.expireJobs(_ids(jobId));
            return (jobId, t);
        }
        vm.warp(block.timestamp + 60);
        vm.prank(provA);
        market.completeJob(jobId, s == JobStatus.FINISHED ? int32(0) : int32(1), bytes32(0), block.timestamp);
    }

    /// @dev `failJobs` items with no sign of life after the start: billed nothing.
    function _silent(uint256[] memory ids) internal pure returns (SilentJob[] memory jobs) {
        jobs = new SilentJob[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            jobs[i] = SilentJob(ids[i], 0);
        }
    }

    function _ids(uint256 a) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = a;
    }

    function _ids(uint256 a, uint256 b) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](2);
        ids[0] = a;
        ids[1] = b;
    }

    function _ids(uint256 a, uint256 b, uint256 c) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](3);
        ids[0] = a;
        ids[1] = b;
        ids[2] = c;
    }

    /// @dev The `expectedStates` bitmask of `JobUnexpectedStatus` for one status.
    function _bit(JobStatus s) internal pure returns (bytes32) {
        return bytes32(uint256(1) << uint8(s));
    }

    bytes32 internal constant LIVE = bytes32(uint256(0x0f)); // PENDING..RUNNING
    bytes32 internal constant PLACED = bytes32(uint256(0x06)); // META_SCHEDULED, SCHEDULED

    function _isTerminal(JobStatus s) internal pure returns (bool) {
        return uint8(s) > uint8(JobStatus.RUNNING);
    }

    /// @dev Logs emitted by the market among `logs` (a call also makes the token log transfers).
    function _marketLogs(Vm.Log[] memory logs) internal view returns (Vm.Log[] memory out) {
        uint256 n;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(market)) ++n;
        }
        out = new Vm.Log[](n);
        n = 0;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(market)) out[n++] = logs[i];
        }
    }

    function _assertOneMarketLog() internal {
        assertEq(_marketLogs(vm.getRecordedLogs()).length, 1, "a transition emits exactly one event");
    }

    function _expectSkipped(uint256 index, uint256 id, bytes memory err) internal {
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.BatchItemSkipped(index, id, err);
    }

    function _unexpected(uint256 id, JobStatus current, bytes32 expected) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobUnexpectedStatus.selector, id, current, expected);
    }

    function _notOracle(address caller) internal view returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.MarketNotOracle.selector, caller, oracle);
    }
}
