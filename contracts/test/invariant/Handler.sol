// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {Test, Vm} from "forge-std/Test.sol";

import {Credit} from "../../src/Credit.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {
    IJobMarket,
    JobStatus,
    JobView,
    Placement,
    ProviderAction,
    ProviderStatus,
    ProviderStep,
    SilentJob,
    Terms
} from "../../src/interfaces/IJobMarket.sol";

/// @notice Drives random sequences of every market call from several customers and providers,
/// with arguments bounded into the plausible range so that most calls go through, plus a "chaos"
/// call in which a random caller tries a random action on a random job.
/// @dev Ghost state is rebuilt from the market's own logs after every call (as an indexer would),
/// so it also follows what the chaos calls managed to do.
contract Handler is Test {
    JobMarket internal market;
    Credit internal credit;
    address internal admin;
    address internal oracle;
    address internal treasury = makeAddr("treasury");

    address[] internal customers;
    address[] internal providers;
    address[] internal everyone; // customers, providers, admin, oracle, a stranger

    bytes internal constant SPEC = '{"command":["./run.sh"],"name":"inv","resources":{"tasks":1}}';

    /// @dev What the handler knows of a job, from the logs.
    struct Ghost {
        address customer;
        Terms terms;
        uint256 escrowIn; // escrow at request + every top-up
        uint256 price; // at placement, 0 while PENDING
        uint256 startedAt; // 0 until RUNNING
        uint256 ends; // JobEnded events seen
        JobStatus firstTerminal;
        JobStatus endedFrom;
        uint256 paid;
        uint256 fee;
        uint256 refunded;
        uint256 endedAt;
        address provider; // the last placement's, kept after the job left it
    }

    mapping(uint256 jobId => Ghost) internal _ghosts;
    uint256[] public jobIds;

    uint256 public ghostDeposited;
    uint256 public ghostWithdrawn;
    uint256 public ghostFeesWithdrawn;
    /// @notice A call that the caller's role does not allow went through.
    bool public unauthorizedSuccess;
    string public unauthorizedWhat;
    /// @notice A top-up event reported an escrow other than the ghost's sum.
    bool public escrowMismatch;
    /// @notice A banned provider was given new work (a placement) or took it (an ACCEPT).
    bool public bannedTookNewWork;
    string public bannedTookWhat;

    mapping(bytes32 => uint256) public calls; // successful calls per action, for the summary

    constructor(
        JobMarket market_,
        Credit credit_,
        address admin_,
        address oracle_,
        address[] memory customers_,
        address[] memory providers_
    ) {
        market = market_;
        credit = credit_;
        admin = admin_;
        oracle = oracle_;
        customers = customers_;
        providers = providers_;
        ghostDeposited = credit_.balanceOf(address(market_)); // what the fixture deposited
        for (uint256 i; i < customers_.length; ++i) {
            everyone.push(customers_[i]);
        }
        for (uint256 i; i < providers_.length; ++i) {
            everyone.push(providers_[i]);
        }
        everyone.push(admin_);
        everyone.push(oracle_);
        everyone.push(makeAddr("stranger"));
    }

    // ------------------------------------------------------------------ reading, for the invariants

    function ghost(uint256 jobId) external view returns (Ghost memory) {
        return _ghosts[jobId];
    }

    function jobCount() external view returns (uint256) {
        return jobIds.length;
    }

    function actors() external view returns (address[] memory) {
        return everyone;
    }

    // ------------------------------------------------------------------ credits

    function deposit(uint256 actorSeed, uint256 amount) external {
        address who = everyone[actorSeed % everyone.length];
        amount = _bound(amount, 1, 1e12);
        _deposit(who, amount);
        calls["deposit"]++;
    }

    function withdraw(uint256 actorSeed, uint256 amount) external {
        address who = everyone[actorSeed % everyone.length];
        uint256 balance = market.balanceOf(who);
        if (balance == 0) return;
        amount = _bound(amount, 1, balance);
        vm.prank(who);
        market.withdraw(amount);
        ghostWithdrawn += amount;
        calls["withdraw"]++;
    }

    function _deposit(address who, uint256 amount) internal {
        vm.prank(admin);
        credit.mint(who, amount);
        vm.startPrank(who);
        credit.approve(address(market), amount);
        market.deposit(amount);
        vm.stopPrank();
        ghostDeposited += amount;
    }

    function _ensureBalance(address who, uint256 amount) internal {
        uint256 balance = market.balanceOf(who);
        if (balance < amount) _deposit(who, amount - balance);
    }

    // ------------------------------------------------------------------ customers

    function request(uint256 customerSeed, uint32 cpus, uint32 gpus, uint32 memMb, uint256 maxPrice, uint256 escrow)
        external
    {
        address who = customers[customerSeed % customers.length];
        // Mostly jobs that fit and pay enough; one in eight too big or too stingy for someone.
        bool odd = cpus % 8 == 0;
        cpus = uint32(_bound(cpus, 1, odd ? 300 : 32));
        gpus = uint32(_bound(gpus, 0, 2));
        memMb = uint32(_bound(memMb, 0, 65_536));
        maxPrice = _bound(maxPrice, 1, odd ? 200_000 : 1_000_000);
        if (!odd && maxPrice < 200_000) maxPrice += 200_000;
        escrow = _bound(escrow, 1, odd ? 1e9 : 2e6); // mostly runs dry within hours
        _ensureBalance(who, escrow);
        vm.recordLogs();
        vm.prank(who);
        market.requestJob(cpus, gpus, memMb, maxPrice, escrow, SPEC);
        _absorb();
        calls["request"]++;
    }

    function topUp(uint256 jobSeed, uint256 amount) external {
        (uint256 id, Ghost storage g) = _pick(jobSeed);
        if (id == 0) return;
        amount = _bound(amount, 1, 1e8);
        _ensureBalance(g.customer, amount);
        vm.recordLogs();
        vm.prank(g.customer);
        market.topUp(id, amount);
        _absorb();
        calls["topUp"]++;
    }

    function cancel(uint256 jobSeed) external {
        if (jobSeed % 3 != 0) return; // rarer than the rest, so that jobs live long enough to run
        (uint256 id, Ghost storage g) = _pick(jobSeed);
        if (id == 0) return;
        vm.recordLogs();
        vm.prank(g.customer);
        market.cancelJob(id);
        _absorb();
        calls["cancel"]++;
    }

    // ------------------------------------------------------------------ oracle

    function place(uint256 jobSeed, uint256 providerSeed) external {
        (uint256 id, Ghost storage g) = _pick(jobSeed);
        if (id == 0) return;
        vm.recordLogs();
        vm.prank(oracle);
        market.placeJob(Placement(id, providers[providerSeed % providers.length], g.terms, type(uint256).max));
        _absorb();
        calls["place"]++;
    }

    function placeMany(uint256 seedA, uint256 seedB, uint256 seedC, uint256 providerSeed) external {
        if (jobIds.length == 0) return;
        uint256[3] memory seeds = [seedA, seedB, seedC];
        Placement[] memory batch = new Placement[](3);
        for (uint256 i; i < 3; ++i) {
            (uint256 id, Ghost storage g) = _pick(seeds[i]);
            batch[i] = Placement(id, providers[(providerSeed + i) % providers.length], g.terms, type(uint256).max);
        }
        vm.recordLogs();
        vm.prank(oracle);
        market.placeJobs(batch);
        _absorb();
        calls["placeMany"]++;
    }

    function reclaim(uint256 jobSeed, uint256 wait) external {
        (uint256 id,) = _pick(jobSeed);
        if (id == 0) return;
        vm.warp(block.timestamp + _bound(wait, 0, 2 hours));
        vm.recordLogs();
        vm.prank(oracle);
        uint256 done = market.reclaimJobs(_one(id));
        _absorb();
        if (done == 1) calls["reclaim"]++;
    }

    function failJobs(uint256 jobSeed) external {
        (uint256 id,) = _pick(jobSeed);
        if (id == 0) return;
        vm.recordLogs();
        vm.prank(oracle);
        uint256 done = market.failJobs(_silent(_one(id)));
        _absorb();
        if (done == 1) calls["failJobs"]++;
    }

    // ------------------------------------------------------------------ providers

    function accept(uint256 jobSeed) external {
        _providerStep(jobSeed, ProviderAction.ACCEPT, 0);
    }

    function start(uint256 jobSeed) external {
        _providerStep(jobSeed, ProviderAction.START, 0);
    }

    function complete(uint256 jobSeed, int32 exitCode) external {
        _providerStep(jobSeed, ProviderAction.COMPLETE, exitCode % 3); // mostly 0, sometimes FAILED
    }

    function _providerStep(uint256 jobSeed, ProviderAction action, int32 exitCode) internal {
        (uint256 id,) = _pick(jobSeed);
        if (id == 0) return;
        address provider = market.getJob(id).provider;
        if (provider == address(0)) return;
        vm.recordLogs();
        vm.prank(provider);
        if (action == ProviderAction.ACCEPT) market.acceptJob(id);
        else if (action == ProviderAction.START) market.startJob(id, block.timestamp);
        else market.completeJob(id, exitCode, bytes32(0), block.timestamp);
        _absorb();
        calls[action == ProviderAction.ACCEPT ? bytes32("accept") : action == ProviderAction.START ? bytes32("start") : bytes32("complete")]++;
    }

    /// @dev The next step a well-behaved party takes on a job (place on the seed's provider,
    /// accept, start, complete), so that random sequences reach every status often.
    function advance(uint256 jobSeed, uint256 providerSeed, int32 exitCode) external {
        (uint256 id, Ghost storage g) = _pick(jobSeed);
        if (id == 0) return;
        JobView memory j = market.getJob(id);
        vm.recordLogs();
        if (j.status == JobStatus.PENDING) {
            vm.prank(oracle);
            market.placeJob(Placement(id, providers[providerSeed % providers.length], g.terms, type(uint256).max));
        } else if (j.status == JobStatus.META_SCHEDULED) {
            vm.prank(j.provider);
            market.acceptJob(id);
        } else if (j.status == JobStatus.SCHEDULED) {
            vm.prank(j.provider);
            market.startJob(id, block.timestamp);
        } else if (j.status == JobStatus.RUNNING) {
            vm.warp(block.timestamp + providerSeed % 1 hours);
            vm.prank(j.provider);
            market.completeJob(id, exitCode % 3, bytes32(0), block.timestamp);
        } else {
            return;
        }
        _absorb();
        calls["advance"]++;
    }

    function refuse(uint256 jobSeed) external {
        if (jobSeed % 3 != 0) return; // rarer, as above
        (uint256 id,) = _pick(jobSeed);
        if (id == 0) return;
        address provider = market.getJob(id).provider;
        if (provider == address(0)) return;
        vm.recordLogs();
        vm.prank(provider);
        market.refuseJob(id, "busy");
        _absorb();
        calls["refuse"]++;
    }

    /// @dev Several steps by one provider, on jobs that may or may not be its own.
    function providerBatch(uint256 providerSeed, uint256 seedA, uint256 seedB, uint256 seedC, uint8 actions)
        external
    {
        if (jobIds.length == 0) return;
        uint256[3] memory seeds = [seedA, seedB, seedC];
        ProviderStep[] memory steps = new ProviderStep[](3);
        for (uint256 i; i < 3; ++i) {
            (uint256 id,) = _pick(seeds[i]);
            steps[i] = ProviderStep(id, ProviderAction((actions >> (2 * i)) % 3), int32(uint32(actions >> 6)), bytes32(0), block.timestamp);
        }
        vm.recordLogs();
        vm.prank(providers[providerSeed % providers.length]);
        market.providerBatch(steps);
        _absorb();
        calls["providerBatch"]++;
    }

    // ------------------------------------------------------------------ anyone, time, admin

    function expire(uint256 seedA, uint256 seedB, uint256 callerSeed) external {
        (uint256 a,) = _pick(seedA);
        (uint256 b,) = _pick(seedB);
        if (a == 0) return;
        vm.recordLogs();
        vm.prank(everyone[callerSeed % everyone.length]);
        uint256 done = market.expireJobs(_two(a, b));
        _absorb();
        if (done != 0) calls["expire"]++;
    }

    function warp(uint256 secondsAhead) external {
        vm.warp(block.timestamp + _bound(secondsAhead, 1, 3 hours));
        calls["warp"]++;
    }

    function setFee(uint256 bps) external {
        bps = _bound(bps, 0, market.MAX_FEE_BPS());
        vm.prank(admin);
        market.setFee(uint16(bps));
        calls["setFee"]++;
    }

    /// @dev The admin bans the last provider (for good), rarely: the others keep the grid going,
    /// and the banned one's live jobs show what a ban lets through.
    function ban(uint256 seed) external {
        address victim = providers[providers.length - 1];
        if (seed % 4 != 0 || _isBanned(victim)) return;
        vm.prank(admin);
        market.banProvider(victim);
        calls["ban"]++;
    }

    function withdrawFees(uint256 amount) external {
        uint256 fees = market.accruedFees();
        if (fees == 0) return;
        amount = _bound(amount, 1, fees);
        vm.prank(admin);
        market.withdrawFees(treasury, amount);
        ghostFeesWithdrawn += amount;
        calls["withdrawFees"]++;
    }

    /// @dev A random caller tries a random job action. Whether or not it goes through, the ghosts
    /// follow the logs; if it goes through for a caller whose role does not allow it, that is flagged.
    function chaos(uint256 callerSeed, uint256 actionSeed, uint256 jobSeed) external {
        (uint256 id, Ghost storage g) = _pick(jobSeed);
        if (id == 0) return;
        address caller = everyone[callerSeed % everyone.length];
        uint256 action = actionSeed % 10;
        JobView memory j = market.getJob(id);
        bool allowed;
        bool ok;
        vm.recordLogs();
        vm.startPrank(caller);
        if (action == 0) {
            allowed = caller == oracle;
            try market.placeJob(Placement(id, providers[actionSeed % providers.length], g.terms, type(uint256).max)) {
                ok = true;
            } catch {}
        } else if (action <= 4) {
            allowed = caller == j.provider;
            if (action == 1) {
                try market.acceptJob(id) { ok = true; } catch {}
            } else if (action == 2) {
                try market.startJob(id, block.timestamp) { ok = true; } catch {}
            } else if (action == 3) {
                try market.completeJob(id, 0, bytes32(0), block.timestamp) { ok = true; } catch {}
            } else {
                try market.refuseJob(id, "chaos") { ok = true; } catch {}
            }
        } else if (action <= 6) {
            allowed = caller == g.customer;
            if (action == 5) {
                try market.cancelJob(id) { ok = true; } catch {}
            } else if (market.balanceOf(caller) > 0) {
                try market.topUp(id, 1) { ok = true; } catch {}
            }
        } else if (action == 7) {
            allowed = caller == oracle;
            try market.reclaimJobs(_one(id)) returns (uint256 done) { ok = done == 1; } catch {}
        } else if (action == 8) {
            allowed = caller == oracle;
            try market.failJobs(_silent(_one(id))) returns (uint256 done) { ok = done == 1; } catch {}
        } else {
            allowed = true;
            try market.expireJobs(_one(id)) returns (uint256 done) { ok = done == 1; } catch {}
        }
        vm.stopPrank();
        _absorb();
        if (ok && !allowed) {
            unauthorizedSuccess = true;
            unauthorizedWhat = string.concat("action ", vm.toString(action), " by ", vm.toString(caller));
        }
        if (ok) calls["chaos"]++;
    }

    // ------------------------------------------------------------------ ghosts from logs

    function _absorb() internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(market)) continue;
            bytes32 topic = logs[i].topics[0];
            if (topic == IJobMarket.JobRequested.selector) _onRequested(logs[i]);
            else if (topic == IJobMarket.JobToppedUp.selector) _onToppedUp(logs[i]);
            else if (topic == IJobMarket.JobPlaced.selector) _onPlaced(logs[i]);
            else if (topic == IJobMarket.JobStatusChanged.selector) _onStatusChanged(logs[i]);
            else if (topic == IJobMarket.JobReturned.selector) _ghosts[uint256(logs[i].topics[1])].price = 0;
            else if (topic == IJobMarket.JobEnded.selector) _onEnded(logs[i]);
        }
    }

    function _onRequested(Vm.Log memory log) internal {
        uint256 id = uint256(log.topics[1]);
        (uint256 escrow, uint256 maxPrice, uint32 cpus, uint32 gpus, uint32 memMb, bytes memory spec) =
            abi.decode(log.data, (uint256, uint256, uint32, uint32, uint32, bytes));
        Ghost storage g = _ghosts[id];
        g.customer = address(uint160(uint256(log.topics[2])));
        g.terms = Terms(keccak256(spec), cpus, gpus, memMb, maxPrice);
        g.escrowIn = escrow;
        jobIds.push(id);
    }

    function _onToppedUp(Vm.Log memory log) internal {
        Ghost storage g = _ghosts[uint256(log.topics[1])];
        (uint256 amount, uint256 escrow) = abi.decode(log.data, (uint256, uint256));
        g.escrowIn += amount;
        if (escrow != g.escrowIn) escrowMismatch = true;
    }

    function _onPlaced(Vm.Log memory log) internal {
        (,, uint256 price) = abi.decode(log.data, (JobStatus, JobStatus, uint256));
        Ghost storage g = _ghosts[uint256(log.topics[1])];
        g.price = price;
        g.provider = address(uint160(uint256(log.topics[2])));
        // A ban is never undone and never lands inside another call: banned now is banned then.
        if (_isBanned(g.provider)) _flagBanned("placed on", log.topics[1]);
    }

    function _onStatusChanged(Vm.Log memory log) internal {
        (, JobStatus to) = abi.decode(log.data, (JobStatus, JobStatus));
        Ghost storage g = _ghosts[uint256(log.topics[1])];
        if (to == JobStatus.SCHEDULED && _isBanned(g.provider)) _flagBanned("accepted by", log.topics[1]);
        if (to == JobStatus.RUNNING) {
            g.startedAt = block.timestamp;
            if (_isBanned(g.provider)) calls["startAfterBan"]++; // accepted before the ban: allowed
        }
    }

    function _isBanned(address provider) internal view returns (bool) {
        (ProviderStatus status,,) = market.getProvider(provider);
        return status == ProviderStatus.BANNED;
    }

    function _flagBanned(string memory what, bytes32 jobId) internal {
        bannedTookNewWork = true;
        bannedTookWhat = string.concat("job ", vm.toString(uint256(jobId)), " ", what, " a banned provider");
    }

    function _onEnded(Vm.Log memory log) internal {
        Ghost storage g = _ghosts[uint256(log.topics[1])];
        (JobStatus from, JobStatus to, uint256 paid, uint256 fee, uint256 refunded,) =
            abi.decode(log.data, (JobStatus, JobStatus, uint256, uint256, uint256, int256));
        if (g.ends++ == 0) {
            g.firstTerminal = to;
            g.endedFrom = from;
            g.paid = paid;
            g.fee = fee;
            g.refunded = refunded;
            g.endedAt = block.timestamp;
        }
    }

    // ------------------------------------------------------------------ helpers

    /// @dev A known job, or 0 if there is none yet; mostly recent ones, which are more often live.
    function _pick(uint256 seed) internal view returns (uint256 id, Ghost storage g) {
        uint256 n = jobIds.length;
        if (n == 0) return (0, _ghosts[0]);
        uint256 window = seed % 4 == 0 ? n : (n < 6 ? n : 6);
        id = jobIds[n - 1 - (seed >> 8) % window];
        g = _ghosts[id];
    }

    function _silent(uint256[] memory ids) internal pure returns (SilentJob[] memory jobs) {
        jobs = new SilentJob[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            jobs[i] = SilentJob(ids[i], 0);
        }
    }

    function _one(uint256 a) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = a;
    }

    function _two(uint256 a, uint256 b) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](2);
        ids[0] = a;
        ids[1] = b;
    }
}
