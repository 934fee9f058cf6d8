// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {console} from "forge-std/Test.sol";
import {StdInvariant} from "forge-std/StdInvariant.sol";

import {Fixture} from "../utils/Fixture.sol";
import {Handler} from "./Handler.sol";
import {JobStatus, JobView, Prices} from "../../src/interfaces/IJobMarket.sol";

/// @notice Invariants of the market under random sequences of every call (see `Handler`):
/// (a) credits are conserved: the market's token balance is the sum of balances, live escrows and
/// accrued fees (and deposits - withdrawals); (b) a terminal status never changes and a job ends
/// once; (c) no job is billed more than price x running time, nor more than its escrow; (d) every
/// ended job's escrow is split exactly into provider + fee + customer refund; (e) a banned
/// provider is given and takes no new work; and no role does what its role does not allow.
/// Deeper and fewer runs than the default: a job needs several steps to reach a terminal status.
/// forge-config: default.invariant.runs = 40
/// forge-config: default.invariant.depth = 200
contract JobMarketInvariantTest is Fixture {
    Handler internal handler;

    function setUp() public override {
        super.setUp();
        address carol = makeAddr("carol");
        address provC = makeAddr("provC");
        address provD = makeAddr("provD");
        _provider(provC, Prices(0, 0, 0)); // a free provider: its jobs never run dry
        _provider(provD, Prices(1_500, 50_000, 100)); // the one the handler may ban
        address[] memory customers = new address[](3);
        customers[0] = alice;
        customers[1] = bob;
        customers[2] = carol;
        address[] memory providers = new address[](4);
        providers[0] = provA;
        providers[1] = provB;
        providers[2] = provC;
        providers[3] = provD;
        handler = new Handler(market, credit, admin, oracle, customers, providers);
        vm.prank(admin);
        market.setFee(300);

        bytes4[] memory selectors = new bytes4[](28);
        selectors[0] = Handler.deposit.selector;
        selectors[1] = Handler.withdraw.selector;
        selectors[2] = Handler.request.selector;
        selectors[3] = Handler.request.selector; // requests twice as likely: jobs feed everything else
        selectors[4] = Handler.topUp.selector;
        selectors[5] = Handler.cancel.selector;
        selectors[6] = Handler.place.selector;
        selectors[7] = Handler.placeMany.selector;
        selectors[8] = Handler.accept.selector;
        selectors[9] = Handler.start.selector;
        selectors[10] = Handler.complete.selector;
        selectors[11] = Handler.refuse.selector;
        selectors[12] = Handler.providerBatch.selector;
        selectors[13] = Handler.reclaim.selector;
        selectors[14] = Handler.failJobs.selector;
        selectors[15] = Handler.expire.selector;
        selectors[16] = Handler.warp.selector;
        selectors[17] = Handler.setFee.selector;
        selectors[18] = Handler.withdrawFees.selector;
        selectors[19] = Handler.chaos.selector;
        selectors[20] = Handler.chaos.selector;
        selectors[21] = Handler.advance.selector; // the happy path, often
        selectors[22] = Handler.advance.selector;
        selectors[23] = Handler.advance.selector;
        selectors[24] = Handler.advance.selector;
        selectors[25] = Handler.advance.selector;
        selectors[26] = Handler.advance.selector;
        selectors[27] = Handler.ban.selector;
        targetSelector(StdInvariant.FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    /// (a) Credit.balanceOf(market) == sum(balances) + sum(live escrows) + accruedFees.
    function invariant_creditsConserved() public view {
        address[] memory actors = handler.actors();
        uint256 sum = market.accruedFees();
        for (uint256 i; i < actors.length; ++i) {
            sum += market.balanceOf(actors[i]);
        }
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            sum += market.getJob(handler.jobIds(i)).escrow;
        }
        uint256 held = credit.balanceOf(address(market));
        assertEq(held, sum, "token balance != balances + live escrows + fees");
        assertEq(
            held,
            handler.ghostDeposited() - handler.ghostWithdrawn() - handler.ghostFeesWithdrawn(),
            "token balance != deposits - withdrawals"
        );
    }

    /// (b) The first terminal status a job reached is its status for good; it ended exactly once.
    function invariant_terminalStatesNeverChange() public view {
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            uint256 id = handler.jobIds(i);
            Handler.Ghost memory g = handler.ghost(id);
            JobView memory j = market.getJob(id);
            if (g.ends == 0) {
                assertLe(uint8(j.status), uint8(JobStatus.RUNNING), "terminal without a JobEnded event");
                assertEq(j.escrow, g.escrowIn, "live escrow != request + top-ups");
                assertEq(j.customer, g.customer);
            } else {
                assertEq(g.ends, 1, "a job ended twice");
                assertEq(uint8(j.status), uint8(g.firstTerminal), "a terminal status changed");
                assertEq(j.escrow, 0);
            }
        }
        assertFalse(handler.escrowMismatch(), "JobToppedUp reported a wrong escrow");
    }

    /// (c) Billed (provider + fee) <= price x running time / 60 and <= escrow; nothing if it never ran.
    function invariant_noJobBilledAbovePriceTimesElapsed() public view {
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            Handler.Ghost memory g = handler.ghost(handler.jobIds(i));
            if (g.ends == 0) continue;
            uint256 billed = g.paid + g.fee;
            if (g.endedFrom == JobStatus.RUNNING) {
                assertLe(billed * 60, g.price * (g.endedAt - g.startedAt), "billed above price x elapsed");
                assertLe(billed, g.escrowIn, "billed above escrow");
                assertLe(g.fee * 10_000, billed * market.MAX_FEE_BPS(), "fee above MAX_FEE_BPS");
            } else {
                assertEq(billed, 0, "billed a job that never ran");
            }
        }
    }

    /// (d) provider + fee + customer == escrow on every ended job.
    function invariant_endedJobsSplitEscrowExactly() public view {
        uint256 n = handler.jobCount();
        for (uint256 i; i < n; ++i) {
            Handler.Ghost memory g = handler.ghost(handler.jobIds(i));
            if (g.ends == 0) continue;
            assertEq(g.paid + g.fee + g.refunded, g.escrowIn, "ended job's split != its escrow");
        }
    }

    /// A ban stops new work at once: no placement on a banned provider and no ACCEPT by it. What
    /// it accepted before may still start and end (and is billed as any job, by the others).
    function invariant_bannedProviderTakesNoNewWork() public view {
        assertFalse(handler.bannedTookNewWork(), handler.bannedTookWhat());
    }

    /// No caller did what its role does not allow.
    function invariant_rolesRespected() public view {
        assertFalse(handler.unauthorizedSuccess(), handler.unauthorizedWhat());
    }

    /// @dev Shown with -vv: what the last run reached, to keep an eye on the handler's coverage.
    function afterInvariant() external view {
        bytes32[21] memory names = [
            bytes32("advance"),
            "deposit",
            "withdraw",
            "request",
            "topUp",
            "cancel",
            "place",
            "placeMany",
            "accept",
            "start",
            "complete",
            "refuse",
            "providerBatch",
            "reclaim",
            "failJobs",
            "expire",
            "setFee",
            "withdrawFees",
            "chaos",
            "ban",
            "startAfterBan"
        ];
        for (uint256 i; i < names.length; ++i) {
            console.log(string(abi.encodePacked(names[i])), handler.calls(names[i]));
        }
        uint256[8] memory byStatus;
        for (uint256 i; i < handler.jobCount(); ++i) {
            byStatus[uint8(market.getJob(handler.jobIds(i)).status)]++;
        }
        for (uint256 s; s < 8; ++s) {
            console.log("jobs in status", s, byStatus[s]);
        }
    }
}
