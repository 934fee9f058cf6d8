// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Fixture} from "./utils/Fixture.sol";
import {Placement, ProviderStep, ProviderAction, Terms} from "../src/interfaces/IJobMarket.sol";

/// @notice Gas of a steady-state job's steps (not the first job ever: `setUp` runs a warm-up job),
/// tracked by `forge snapshot` in `.gas-snapshot`. A snapshot is the gas of the whole test body,
/// so a test that needs a job first measures that job's earlier steps too; each test says which
/// calls its figure holds. Figures per transaction, from receipts: `scripts/bench_gas.py`.
contract GasTest is Fixture {
    uint256 internal warmId;
    Terms internal warmTerms;

    function setUp() public override {
        super.setUp();
        (warmId, warmTerms) = _running(alice, 100 * CREDIT);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(warmId, 0, bytes32(0), block.timestamp);
    }

    /// @dev One call: requestJob.
    function test_gas_requestJob() public {
        vm.prank(alice);
        market.requestJob(4, 0, 8192, CREDIT, 100 * CREDIT, spec);
    }

    /// @dev Two calls: requestJob, then placeJob.
    function test_gas_placeJob() public {
        (uint256 id, Terms memory t) = _request(alice, 100 * CREDIT);
        _place(id, t, provA);
    }

    /// @dev A whole job, five calls: requestJob, placeJob, acceptJob, startJob, completeJob.
    function test_gas_lifecycle_finish() public {
        (uint256 id,) = _running(alice, 100 * CREDIT);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
    }

    /// @dev 101 calls: 100 requestJob, then one placeJobs of the 100.
    function test_gas_placeJobs_100() public {
        Placement[] memory batch = new Placement[](100);
        for (uint256 i; i < 100; ++i) {
            (uint256 id, Terms memory t) = _request(alice, 10 * CREDIT);
            batch[i] = Placement(id, provA, t, type(uint256).max);
        }
        vm.prank(oracle);
        market.placeJobs(batch);
    }

    /// @dev Two calls: the Credit token's mint, then deposit.
    function test_gas_deposit() public {
        vm.prank(admin);
        credit.mint(alice, 10 * CREDIT);
        vm.prank(alice);
        market.deposit(10 * CREDIT);
    }
}
