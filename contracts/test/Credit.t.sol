// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Test} from "forge-std/Test.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {Credit} from "../src/Credit.sol";

/// @notice The credit token: 6 decimals, minting by MINTER_ROLE only, a faucet on local devnets only.
contract CreditTest is Test {
    Credit internal credit;
    address internal admin = makeAddr("admin");
    address internal alice = makeAddr("alice");

    function setUp() public {
        credit = new Credit(admin);
    }

    function test_metadata() public view {
        assertEq(credit.decimals(), 6);
        assertEq(credit.name(), "metascheduler credit");
        assertEq(credit.symbol(), "MSC");
        assertEq(credit.totalSupply(), 0);
        assertEq(credit.FAUCET_AMOUNT(), 1_000 * 10 ** 6);
    }

    function test_mint_byMinter() public {
        vm.prank(admin);
        credit.mint(alice, 5e6);
        assertEq(credit.balanceOf(alice), 5e6);
        assertEq(credit.totalSupply(), 5e6);
    }

    function test_mint_revertsIfNotMinter() public {
        bytes32 role = credit.MINTER_ROLE();
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, alice, role));
        vm.prank(alice);
        credit.mint(alice, 1);
    }

    function test_mint_byGrantedMinterAndNotAfterRevoke() public {
        bytes32 role = credit.MINTER_ROLE();
        vm.prank(admin);
        credit.grantRole(role, alice);
        vm.prank(alice);
        credit.mint(alice, 1);
        vm.prank(admin);
        credit.revokeRole(role, alice);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, alice, role));
        vm.prank(alice);
        credit.mint(alice, 1);
    }

    function test_faucet_onAnvilChain() public {
        vm.chainId(31337);
        vm.prank(alice);
        credit.faucet();
        assertEq(credit.balanceOf(alice), credit.FAUCET_AMOUNT());
    }

    function test_faucet_onGanacheChain() public {
        vm.chainId(1337);
        vm.prank(alice);
        credit.faucet();
        assertEq(credit.balanceOf(alice), credit.FAUCET_AMOUNT());
    }

    function test_faucet_revertsOnOtherChains() public {
        uint256[4] memory chains = [uint256(1), 10, 8453, 11155111];
        for (uint256 i; i < chains.length; ++i) {
            vm.chainId(chains[i]);
            vm.expectRevert(abi.encodeWithSelector(Credit.CreditFaucetDisabled.selector, chains[i]));
            vm.prank(alice);
            credit.faucet();
        }
    }

    function testFuzz_faucet_onlyOnDevnets(uint64 chainId) public {
        vm.assume(chainId != 0);
        vm.chainId(chainId);
        if (chainId != 31337 && chainId != 1337) {
            vm.expectRevert(abi.encodeWithSelector(Credit.CreditFaucetDisabled.selector, uint256(chainId)));
        }
        vm.prank(alice);
        credit.faucet();
    }

    function test_permit_setsAllowance() public {
        (address owner, uint256 pk) = makeAddrAndKey("owner");
        bytes32 typehash =
            keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                credit.DOMAIN_SEPARATOR(),
                keccak256(abi.encode(typehash, owner, alice, 7, 0, block.timestamp))
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        credit.permit(owner, alice, 7, block.timestamp, v, r, s);
        assertEq(credit.allowance(owner, alice), 7);
        assertEq(credit.nonces(owner), 1);
    }
}
