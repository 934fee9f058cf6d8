// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Fixture} from "./utils/Fixture.sol";
import {Placement, ProviderStep, ProviderAction, Terms} from "../src/interfaces/IJobMarket.sol";

/// @notice Gas of each step of a steady-state job (not the first job ever), tracked by
/// `forge snapshot` in `.gas-snapshot`. Each test measures one call with a warm-up job before it.
contract GasTest is Fixture {
    uint256 internal warmId;
    Terms internal warmTerms;

    function setUp() public override {
        super.setUp();
        (warmId, warmTerms) = _running(alice, 100 * CREDIT);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(warmId, 0, bytes32(0));
    }

    function test_gas_requestJob() public {
        vm.prank(alice);
        market.requestJob(4, 0, 8192, CREDIT, 100 * CREDIT, spec);
    }

    function test_gas_placeJob() public {
        (uint256 id, Terms memory t) = _request(alice, 100 * CREDIT);
        _place(id, t, provA);
    }

    function test_gas_lifecycle_finish() public {
        (uint256 id,) = _running(alice, 100 * CREDIT);
        vm.warp(block.timestamp + 600);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0));
    }

    function test_gas_placeJobs_100() public {
        Placement[] memory batch = new Placement[](100);
        for (uint256 i; i < 100; ++i) {
            (uint256 id, Terms memory t) = _request(alice, 10 * CREDIT);
            batch[i] = Placement(id, provA, t, type(uint256).max);
        }
        vm.prank(oracle);
        market.placeJobs(batch);
    }

    function test_gas_deposit() public {
        vm.prank(admin);
        credit.mint(alice, 10 * CREDIT);
        vm.prank(alice);
        market.deposit(10 * CREDIT);
    }
}
