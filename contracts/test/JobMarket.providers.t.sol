// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {Fixture} from "./utils/Fixture.sol";
import {
    IJobMarket, Hardware, JobStatus, Placement, Prices, ProviderStatus, Terms
} from "../src/interfaces/IJobMarket.sol";

/// @notice The provider registry (register, update, approve, ban, remove) and every reason a
/// placement is refused.
contract JobMarketProvidersTest is Fixture {
    address internal carol = makeAddr("carolProvider");

    function _labels() internal pure returns (string[] memory labels) {
        labels = new string[](2);
        labels[0] = "x86_64";
        labels[1] = "infiniband";
    }

    function _register(address who, Hardware memory hw, Prices memory prices) internal {
        vm.prank(who);
        market.registerProvider(hw, prices, _labels());
    }

    function _adminRevert(address caller) internal view returns (bytes memory) {
        return abi.encodeWithSelector(
            IAccessControl.AccessControlUnauthorizedAccount.selector, caller, market.DEFAULT_ADMIN_ROLE()
        );
    }

    // ------------------------------------------------------------------ register / update

    function test_register_recordsHardwareAndPrices() public {
        Hardware memory hw = Hardware(2, 64, 4, 262_144);
        Prices memory prices = Prices(10, 500, 3);
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.ProviderRegistered(carol, hw, prices, _labels());
        _register(carol, hw, prices);
        (ProviderStatus status, Hardware memory h, Prices memory p) = market.getProvider(carol);
        assertEq(uint8(status), uint8(ProviderStatus.REGISTERED));
        assertEq(abi.encode(h), abi.encode(hw));
        assertEq(abi.encode(p), abi.encode(prices));
        assertEq(market.quote(carol, 8, 1, 2048), 8 * 10 + 500 + 2048 * 3 / 1024);
    }

    function test_register_revertsOnZeroNodes() public {
        vm.expectRevert(IJobMarket.ProviderInvalidHardware.selector);
        _register(carol, Hardware(0, 64, 0, 1024), Prices(1, 1, 1));
    }

    function test_register_revertsOnZeroCpus() public {
        vm.expectRevert(IJobMarket.ProviderInvalidHardware.selector);
        _register(carol, Hardware(1, 0, 0, 1024), Prices(1, 1, 1));
    }

    function test_update_keepsApprovalAndChangesPrices() public {
        _register(provA, Hardware(1, 8, 0, 1024), Prices(5, 0, 0));
        (ProviderStatus status, Hardware memory h, Prices memory p) = market.getProvider(provA);
        assertEq(uint8(status), uint8(ProviderStatus.APPROVED));
        assertEq(h.cpus, 8);
        assertEq(p.cpu, 5);
    }

    function test_update_doesNotChangePlacedJobsPrice() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        _register(provA, Hardware(4, 256, 8, 1_048_576), Prices(1_000_000, 0, 0));
        vm.warp(block.timestamp + 60);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(provA), PRICE_A);
    }

    function test_register_revertsIfBanned() public {
        vm.prank(admin);
        market.banProvider(provA);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderBanned.selector, provA));
        _register(provA, Hardware(1, 8, 0, 1024), Prices(5, 0, 0));
    }

    // ------------------------------------------------------------------ approve / ban / remove

    function test_approve_emitsStatusChange() public {
        _register(carol, Hardware(1, 8, 0, 1024), Prices(5, 0, 0));
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.ProviderStatusChanged(carol, ProviderStatus.REGISTERED, ProviderStatus.APPROVED);
        vm.prank(admin);
        market.approveProvider(carol);
        (ProviderStatus status,,) = market.getProvider(carol);
        assertEq(uint8(status), uint8(ProviderStatus.APPROVED));
    }

    function test_approve_revertsIfNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderNotFound.selector, carol));
        vm.prank(admin);
        market.approveProvider(carol);
        // Already approved, or banned: nothing to approve either.
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderNotFound.selector, provA));
        vm.prank(admin);
        market.approveProvider(provA);
        vm.prank(admin);
        market.banProvider(provB);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderNotFound.selector, provB));
        vm.prank(admin);
        market.approveProvider(provB);
    }

    function test_ban_emitsStatusChange() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.ProviderStatusChanged(provA, ProviderStatus.APPROVED, ProviderStatus.BANNED);
        vm.prank(admin);
        market.banProvider(provA);
        _register(carol, Hardware(1, 8, 0, 1024), Prices(5, 0, 0));
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.ProviderStatusChanged(carol, ProviderStatus.REGISTERED, ProviderStatus.BANNED);
        vm.prank(admin);
        market.banProvider(carol);
    }

    function test_ban_revertsIfUnknownOrAlreadyBanned() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderNotFound.selector, carol));
        vm.prank(admin);
        market.banProvider(carol);
        vm.prank(admin);
        market.banProvider(provA);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderNotFound.selector, provA));
        vm.prank(admin);
        market.banProvider(provA);
    }

    function test_ban_liveJobsCanStillEnd() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.prank(admin);
        market.banProvider(provA);
        vm.warp(block.timestamp + 60);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(provA), PRICE_A);
    }

    function test_remove_deletesRecordAndAllowsRegistration() public {
        vm.expectEmit(true, true, true, true, address(market));
        emit IJobMarket.ProviderStatusChanged(provA, ProviderStatus.APPROVED, ProviderStatus.NONE);
        vm.prank(admin);
        market.removeProvider(provA);
        (ProviderStatus status, Hardware memory h,) = market.getProvider(provA);
        assertEq(uint8(status), uint8(ProviderStatus.NONE));
        assertEq(h.cpus, 0);
        _register(provA, Hardware(1, 8, 0, 1024), Prices(5, 0, 0));
        (status,,) = market.getProvider(provA);
        assertEq(uint8(status), uint8(ProviderStatus.REGISTERED));
    }

    function test_remove_revertsIfBanned_soTheBanStays() public {
        vm.startPrank(admin);
        market.banProvider(provA);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderBanned.selector, provA));
        market.removeProvider(provA);
        vm.stopPrank();
        (ProviderStatus status,,) = market.getProvider(provA);
        assertEq(uint8(status), uint8(ProviderStatus.BANNED));
    }

    function test_remove_revertsIfUnknown() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderNotFound.selector, carol));
        vm.prank(admin);
        market.removeProvider(carol);
    }

    function test_remove_liveJobsCanStillEnd() public {
        (uint256 id,) = _running(alice, 5 * CREDIT);
        vm.prank(admin);
        market.removeProvider(provA);
        vm.warp(block.timestamp + 60);
        vm.prank(provA);
        market.completeJob(id, 0, bytes32(0), block.timestamp);
        assertEq(market.balanceOf(provA), PRICE_A);
    }

    /// A job stores its provider's registration number, not its address: the number survives
    /// removal and re-registration, and number 0 (PENDING, or a caller never registered) owns nothing.
    function test_providerNumber_keptAcrossRemovalAndNeverZero() public {
        (uint256 id, Terms memory t) = _request(alice, 5 * CREDIT);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotAssignedProvider.selector, id, stranger, address(0)));
        vm.prank(stranger);
        market.refuseJob(id, "not mine");

        _place(id, t, provA);
        vm.prank(admin);
        market.removeProvider(provA);
        _register(provA, Hardware(1, 8, 0, 1024), Prices(5, 0, 0));
        assertEq(market.getJob(id).provider, provA);
        vm.prank(provA);
        market.acceptJob(id);

        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotAssignedProvider.selector, id, stranger, provA));
        vm.prank(stranger);
        market.startJob(id, block.timestamp);
        assertEq(uint8(_status(id)), uint8(JobStatus.SCHEDULED));
    }

    function test_registryAdminActions_revertIfNotAdmin() public {
        address[6] memory callers = [oracle, provA, provB, alice, bob, stranger];
        for (uint256 i; i < callers.length; ++i) {
            vm.startPrank(callers[i]);
            vm.expectRevert(_adminRevert(callers[i]));
            market.approveProvider(provA);
            vm.expectRevert(_adminRevert(callers[i]));
            market.banProvider(provA);
            vm.expectRevert(_adminRevert(callers[i]));
            market.removeProvider(provA);
            vm.stopPrank();
        }
    }

    // ------------------------------------------------------------------ placement

    function test_place_revertsIfNotOracle() public {
        (uint256 id, Terms memory t) = _request(alice, CREDIT);
        address[6] memory callers = [admin, provA, provB, alice, bob, stranger];
        for (uint256 i; i < callers.length; ++i) {
            vm.expectRevert(_notOracle(callers[i]));
            vm.prank(callers[i]);
            market.placeJob(Placement(id, provA, t, type(uint256).max));
            vm.expectRevert(_notOracle(callers[i]));
            vm.prank(callers[i]);
            market.placeJobs(new Placement[](0));
        }
    }

    function test_place_revertsOnTermsMismatch() public {
        (uint256 id, Terms memory t) = _request(alice, CREDIT);
        bytes16 expected = _tag(t);
        Terms[5] memory wrong = [t, t, t, t, t];
        wrong[0].specHash = keccak256("another spec");
        wrong[1].cpus = 1; // fewer CPUs would make a cheaper price
        wrong[2].gpus = 1;
        wrong[3].memMb = 1024;
        wrong[4].maxPricePerMinute = 2 * CREDIT;
        for (uint256 i; i < wrong.length; ++i) {
            Terms memory w = _copy(wrong[i]);
            vm.expectRevert(
                abi.encodeWithSelector(IJobMarket.JobTermsMismatch.selector, id, expected, _tag(w))
            );
            vm.prank(oracle);
            market.placeJob(Placement(id, provA, w, type(uint256).max));
        }
    }

    function _copy(Terms memory t) internal pure returns (Terms memory) {
        return Terms(t.specHash, t.cpus, t.gpus, t.memMb, t.maxPricePerMinute);
    }

    function test_place_revertsIfProviderNotApproved() public {
        (uint256 id, Terms memory t) = _request(alice, CREDIT);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderNotApproved.selector, carol, ProviderStatus.NONE));
        vm.prank(oracle);
        market.placeJob(Placement(id, carol, t, type(uint256).max));

        _register(carol, Hardware(4, 256, 8, 1_048_576), Prices(1, 1, 1));
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.ProviderNotApproved.selector, carol, ProviderStatus.REGISTERED)
        );
        vm.prank(oracle);
        market.placeJob(Placement(id, carol, t, type(uint256).max));

        vm.prank(admin);
        market.banProvider(provA);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ProviderNotApproved.selector, provA, ProviderStatus.BANNED));
        vm.prank(oracle);
        market.placeJob(Placement(id, provA, t, type(uint256).max));
    }

    function test_place_revertsIfJobDoesNotFit() public {
        _register(carol, Hardware(1, 4, 1, 8192), Prices(1, 1, 1));
        vm.prank(admin);
        market.approveProvider(carol);
        uint32[3][3] memory tooBig = [[uint32(5), 0, 8192], [uint32(4), 2, 8192], [uint32(4), 1, 8193]];
        for (uint256 i; i < 3; ++i) {
            Terms memory t = _terms(tooBig[i][0], tooBig[i][1], tooBig[i][2], CREDIT);
            vm.prank(alice);
            uint256 id = market.requestJob(t.cpus, t.gpus, t.memMb, t.maxPricePerMinute, CREDIT, spec);
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobDoesNotFit.selector, id, carol));
            vm.prank(oracle);
            market.placeJob(Placement(id, carol, t, type(uint256).max));
        }
        // Exactly at the declared limits it fits.
        Terms memory exact = _terms(4, 1, 8192, CREDIT);
        vm.prank(alice);
        uint256 ok = market.requestJob(4, 1, 8192, CREDIT, CREDIT, spec);
        vm.prank(oracle);
        market.placeJob(Placement(ok, carol, exact, type(uint256).max));
        assertEq(uint8(_status(ok)), uint8(JobStatus.META_SCHEDULED));
    }

    function test_place_revertsIfPriceAboveMax() public {
        Terms memory t = _terms(4, 0, 8192, PRICE_A - 1);
        vm.prank(alice);
        uint256 id = market.requestJob(t.cpus, t.gpus, t.memMb, t.maxPricePerMinute, CREDIT, spec);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.JobPriceAboveMax.selector, id, provA, PRICE_A, PRICE_A - 1)
        );
        vm.prank(oracle);
        market.placeJob(Placement(id, provA, t, type(uint256).max));
    }

    function test_place_atExactlyMaxPrice() public {
        Terms memory t = _terms(4, 0, 8192, PRICE_A);
        vm.prank(alice);
        uint256 id = market.requestJob(t.cpus, t.gpus, t.memMb, t.maxPricePerMinute, CREDIT, spec);
        _place(id, t, provA);
        assertEq(market.getJob(id).pricePerMinute, PRICE_A);
        assertEq(market.quote(provA, 4, 0, 8192), PRICE_A);
    }

    function test_place_priceCountsGpusAndMemory() public {
        Terms memory t = _terms(2, 3, 3000, CREDIT);
        vm.prank(alice);
        uint256 id = market.requestJob(t.cpus, t.gpus, t.memMb, t.maxPricePerMinute, CREDIT, spec);
        _place(id, t, provB); // 2*2,000 + 3*40,000 + 3000*100/1024 (=292)
        assertEq(market.getJob(id).pricePerMinute, 4_000 + 120_000 + 292);
    }
}
