// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {
    IJobMarket,
    JobStatus,
    ProviderStatus,
    Hardware,
    Prices,
    Terms,
    Placement,
    SilentJob,
    ProviderAction,
    ProviderStep,
    JobView
} from "./interfaces/IJobMarket.sol";
import {Billing} from "./libraries/Billing.sol";
import {CreditLedger} from "./base/CreditLedger.sol";
import {ProviderRegistry} from "./base/ProviderRegistry.sol";

/// @title JobMarket
/// @notice The job state machine of metascheduler, over its credit ledger (`CreditLedger`) and
/// provider registry (`ProviderRegistry`).
/// @dev Billing: a running job costs `pricePerMinute * elapsedSeconds / 60` (rounded down, in the
/// customer's favour), capped by its escrow (`Billing`, which `metascheduler/billing.py` mirrors).
/// Credits that reach the contract outside `deposit` (a plain transfer) are a surplus above what
/// the market owes, which only the admin's `sweepSurplus` moves.
contract JobMarket is CreditLedger, ProviderRegistry {
    /// @inheritdoc IJobMarket
    uint256 public constant MAX_FEE_BPS = 2_000;
    /// @inheritdoc IJobMarket
    uint256 public constant MAX_SPEC_BYTES = 16_384;
    int256 private constant NO_EXIT_CODE = -1;

    /// @dev Job record, two slots.
    /// slot 0, the state: termsTag (128) | providerId (32) | status (8) | since (32) |
    ///   pricePerMinute (40) | rulesId (16). Everything a placement, an accept or a start reads
    ///   and writes. The request already makes it non-zero (the tag), so a placement rewrites a
    ///   live slot (2,900 gas) instead of filling a fresh one (20,000).
    /// slot 1, the money: customer (160) | escrow (96). Cleared when the job ends (the escrow is
    ///   then zero and the customer is in the job's events), which refunds gas to the last step.
    /// termsTag: the first 16 bytes of keccak256(abi.encode(Terms)). The oracle passes the terms
    ///   back at placement; forging terms that match a customer's tag is a second preimage of
    ///   128 bits. Never cleared; zero means "no such job".
    /// providerId: the provider's registration number (see `_providerIds`), 0 while PENDING.
    /// `since` is the block time the job entered its status (0 while PENDING): the start of
    /// metering while RUNNING, the start of the timeout while placed, the end once terminal.
    /// rulesId: the version of the fee and timeouts in force at placement (see `Rules`), fixed
    /// with the price, so that an admin cannot change a placed or running deal.
    struct Job {
        bytes16 termsTag;
        uint32 providerId;
        JobStatus status;
        uint32 since;
        uint40 pricePerMinute;
        uint16 rulesId;
        address customer;
        uint96 escrow;
    }

    /// @dev Settings read on the hot paths, one slot: oracle (160) | jobCount (48) | rulesId (16) |
    /// paused (8) | requestFee (24). A request reads it for `paused`, the next id and the fee, a
    /// placement for the oracle's address and the rules in force: one cold read each.
    struct Config {
        address oracle;
        uint48 jobCount;
        uint16 rulesId;
        bool paused;
        uint24 requestFee;
    }

    /// @dev What a placement fixes for a job's life besides its price, one slot: feeBps (16) |
    /// acceptTimeout (32) | startTimeout (32). Each change of the fee or the timeouts records a new
    /// version; a job keeps the version it was placed under.
    struct Rules {
        uint16 feeBps;
        uint32 acceptTimeout;
        uint32 startTimeout;
    }

    Config private _config;
    mapping(uint16 rulesId => Rules) private _rules;
    mapping(uint256 jobId => Job) private _jobs;

    /// @param credit_ The ERC-20 (with permit) that credits are paid in.
    /// @param admin Holder of DEFAULT_ADMIN_ROLE: approves providers, sets fees and timeouts, pauses.
    /// @param oracle_ The oracle: places jobs, reclaims stale placements, fails silent providers' jobs.
    /// @param acceptTimeout Seconds a provider has to accept a placement before the oracle may reclaim it.
    /// @param startTimeout Seconds a queued (SCHEDULED) job may wait to start before it may be reclaimed.
    constructor(IERC20 credit_, address admin, address oracle_, uint32 acceptTimeout, uint32 startTimeout)
        CreditLedger(credit_)
    {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _config = Config({oracle: oracle_, jobCount: 0, rulesId: 0, paused: false, requestFee: 0});
        _rules[0] = Rules(0, acceptTimeout, startTimeout);
        emit OracleChanged(address(0), oracle_);
        emit TimeoutsChanged(acceptTimeout, startTimeout);
    }

    /// @dev Only the oracle; returns the config slot, which the caller usually needs too.
    function _onlyOracle() private view returns (Config memory cfg) {
        cfg = _config;
        if (msg.sender != cfg.oracle) revert MarketNotOracle(msg.sender, cfg.oracle);
    }

    // ================================================================ customers

    /// @inheritdoc IJobMarket
    function requestJob(
        uint32 cpus,
        uint32 gpus,
        uint32 memMb,
        uint256 maxPricePerMinute,
        uint256 escrow,
        bytes calldata spec
    ) external returns (uint256 jobId) {
        Config memory cfg = _config;
        if (cfg.paused) revert MarketRequestsPaused();
        if (cpus == 0) revert JobInvalidResources(cpus, gpus, memMb);
        if (spec.length == 0 || spec.length > MAX_SPEC_BYTES) revert JobInvalidSpecLength(spec.length, MAX_SPEC_BYTES);
        if (escrow == 0 || escrow > type(uint96).max) revert JobInvalidAmount(escrow, type(uint96).max);
        if (maxPricePerMinute == 0 || maxPricePerMinute > type(uint40).max) {
            revert JobInvalidAmount(maxPricePerMinute, type(uint40).max);
        }
        // The request fee is paid even if the job is cancelled: a flood of requests costs its
        // sender. escrow <= uint96 max and the fee < 2^24: the sum does not overflow.
        _debit(msg.sender, escrow + cfg.requestFee);
        if (cfg.requestFee != 0) accruedFees += cfg.requestFee;

        unchecked {
            jobId = cfg.jobCount + 1; // 2^48 jobs will not be requested
        }
        _config.jobCount = uint48(jobId);
        Job storage job = _jobs[jobId];
        job.termsTag = bytes16(keccak256(abi.encode(Terms(keccak256(spec), cpus, gpus, memMb, maxPricePerMinute))));
        job.customer = msg.sender;
        job.escrow = uint96(escrow);
        emit JobRequested(jobId, msg.sender, escrow, cfg.requestFee, maxPricePerMinute, cpus, gpus, memMb, spec);
    }

    /// @inheritdoc IJobMarket
    function topUp(uint256 jobId, uint256 amount) external {
        Job storage job = _jobs[jobId];
        _orRevert(_customerOwns(jobId, job));
        uint256 escrow = job.escrow;
        // A running job whose escrow is spent may be ended OUT_OF_CREDITS, and its bill is capped
        // by the escrow: a top-up then would buy the run past the escrow (up to the expiry, an
        // agent's round) for whatever little it adds. The job is left to end; a new one is run.
        if (job.status == JobStatus.RUNNING) {
            uint256 until = _fundedUntil(job.since, job.pricePerMinute, escrow);
            if (block.timestamp >= until) revert JobEscrowSpent(jobId, until);
        }
        uint256 room;
        unchecked {
            // Compare with the room left rather than add first: a huge amount must not overflow.
            room = type(uint96).max - escrow; // escrow <= uint96 max
            if (amount == 0 || amount > room) revert JobInvalidAmount(amount, room);
            escrow += amount; // <= uint96 max
        }
        _debit(msg.sender, amount);
        job.escrow = uint96(escrow);
        emit JobToppedUp(jobId, amount, escrow);
    }

    /// @inheritdoc IJobMarket
    function cancelJob(uint256 jobId) external {
        Job storage job = _jobs[jobId];
        _orRevert(_customerOwns(jobId, job));
        JobStatus status = job.status;
        _end(
            jobId,
            job,
            status,
            JobStatus.CANCELLED,
            status == JobStatus.RUNNING ? _providerOf(job) : address(0),
            block.timestamp,
            NO_EXIT_CODE,
            0
        );
    }

    // ================================================================ oracle

    /// @inheritdoc IJobMarket
    function placeJob(Placement calldata placement) external {
        _orRevert(_tryPlace(placement, _onlyOracle().rulesId));
    }

    /// @inheritdoc IJobMarket
    function placeJobs(Placement[] calldata placements) external returns (uint256 done) {
        uint16 rulesId = _onlyOracle().rulesId;
        for (uint256 i; i < placements.length; ++i) {
            done += _report(i, placements[i].jobId, _tryPlace(placements[i], rulesId));
        }
    }

    /// @inheritdoc IJobMarket
    function reclaimJobs(uint256[] calldata jobIds) external returns (uint256 done) {
        _onlyOracle();
        for (uint256 i; i < jobIds.length; ++i) {
            done += _report(i, jobIds[i], _tryReclaim(jobIds[i]));
        }
    }

    /// @inheritdoc IJobMarket
    function failJobs(SilentJob[] calldata jobs) external returns (uint256 done) {
        _onlyOracle();
        for (uint256 i; i < jobs.length; ++i) {
            done += _report(i, jobs[i].jobId, _tryFailSilent(jobs[i].jobId, jobs[i].lastSeen));
        }
    }

    // ================================================================ providers' jobs

    /// @inheritdoc IJobMarket
    function acceptJob(uint256 jobId) external {
        _orRevert(_tryStep(jobId, ProviderAction.ACCEPT, 0, 0, 0));
    }

    /// @inheritdoc IJobMarket
    function startJob(uint256 jobId, uint256 startedAt) external {
        _orRevert(_tryStep(jobId, ProviderAction.START, 0, 0, startedAt));
    }

    /// @inheritdoc IJobMarket
    function completeJob(uint256 jobId, int32 exitCode, bytes32 resultDigest, uint256 endedAt) external {
        _orRevert(_tryStep(jobId, ProviderAction.COMPLETE, exitCode, resultDigest, endedAt));
    }

    /// @inheritdoc IJobMarket
    function providerBatch(ProviderStep[] calldata steps) external returns (uint256 done) {
        for (uint256 i; i < steps.length; ++i) {
            ProviderStep calldata s = steps[i];
            done += _report(i, s.jobId, _tryStep(s.jobId, s.action, s.exitCode, s.resultDigest, s.at));
        }
    }

    /// @inheritdoc IJobMarket
    function refuseJob(uint256 jobId, string calldata reason) external {
        Job storage job = _jobs[jobId];
        (JobStatus status,, bytes memory err) = _providerOwns(jobId, job, _PLACED);
        _orRevert(err);
        _returnToPending(jobId, job, status, reason);
    }

    // ================================================================ anyone

    /// @inheritdoc IJobMarket
    function expireJobs(uint256[] calldata jobIds) external returns (uint256 done) {
        for (uint256 i; i < jobIds.length; ++i) {
            done += _report(i, jobIds[i], _tryExpire(jobIds[i]));
        }
    }

    // ================================================================ admin

    /// @inheritdoc IJobMarket
    function setOracle(address newOracle) external onlyRole(DEFAULT_ADMIN_ROLE) {
        emit OracleChanged(_config.oracle, newOracle);
        _config.oracle = newOracle;
    }

    /// @inheritdoc IJobMarket
    function setFee(uint16 bps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (bps > MAX_FEE_BPS) revert MarketFeeTooHigh(bps, MAX_FEE_BPS);
        Rules memory r = _rules[_config.rulesId];
        emit FeeChanged(r.feeBps, bps);
        r.feeBps = bps;
        _newRules(r);
    }

    /// @inheritdoc IJobMarket
    function setTimeouts(uint32 acceptTimeout, uint32 startTimeout) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Rules memory r = _rules[_config.rulesId];
        r.acceptTimeout = acceptTimeout;
        r.startTimeout = startTimeout;
        _newRules(r);
        emit TimeoutsChanged(acceptTimeout, startTimeout);
    }

    /// @inheritdoc IJobMarket
    function setRequestFee(uint256 fee) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (fee > type(uint24).max) revert MarketRequestFeeTooHigh(fee, type(uint24).max);
        emit RequestFeeChanged(_config.requestFee, fee);
        _config.requestFee = uint24(fee);
    }

    function _newRules(Rules memory r) private {
        uint16 id = _config.rulesId;
        if (id == type(uint16).max) revert MarketTooManyRuleChanges();
        unchecked {
            ++id;
        }
        _rules[id] = r;
        _config.rulesId = id;
    }

    /// @inheritdoc IJobMarket
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _config.paused = true;
        emit RequestsPaused(msg.sender);
    }

    /// @inheritdoc IJobMarket
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _config.paused = false;
        emit RequestsUnpaused(msg.sender);
    }

    // ================================================================ reading

    /// @inheritdoc IJobMarket
    function getJob(uint256 jobId) external view returns (JobView memory) {
        Job memory j = _jobs[jobId];
        // An existence check on a keccak256 hash, not a balance or a time (Slither taints the whole
        // record because `since` is a block time).
        // slither-disable-next-line incorrect-equality
        if (j.termsTag == 0) revert JobNotFound(jobId);
        return JobView(
            j.customer,
            _providerAddrs[j.providerId],
            j.status,
            j.since,
            j.pricePerMinute,
            _rules[j.rulesId].feeBps, // version 0 (a PENDING job's) has no fee: setFee makes a new one
            j.escrow,
            j.termsTag
        );
    }

    /// @inheritdoc IJobMarket
    function jobCount() external view returns (uint256) {
        return _config.jobCount;
    }

    /// @inheritdoc IJobMarket
    function config()
        external
        view
        returns (address oracle, uint256 feeBps, bool paused, uint256 acceptTimeout, uint256 startTimeout)
    {
        Config memory c = _config;
        Rules memory r = _rules[c.rulesId];
        return (c.oracle, r.feeBps, c.paused, r.acceptTimeout, r.startTimeout);
    }

    /// @inheritdoc IJobMarket
    function requestFee() external view returns (uint256) {
        return _config.requestFee;
    }

    /// @inheritdoc IJobMarket
    function fundedUntil(uint256 jobId) external view returns (uint256) {
        Job storage j = _jobs[jobId];
        JobStatus status = j.status;
        // An existence check on a keccak256 hash, not a balance or a time (see getJob).
        // slither-disable-next-line incorrect-equality
        if (j.termsTag == 0) revert JobNotFound(jobId);
        if (status != JobStatus.RUNNING) revert JobUnexpectedStatus(jobId, status, _bit(JobStatus.RUNNING));
        return _fundedUntil(j.since, j.pricePerMinute, j.escrow);
    }

    // ================================================================ state machine internals
    // Each `_try` step returns the custom error it would revert with (ABI-encoded), or empty
    // bytes on success: single calls revert with it, batches skip the item and report it.

    /// @dev Sets of statuses as `JobUnexpectedStatus` reports them (bit i = JobStatus i), from
    /// the enum: the live ones (PENDING up to RUNNING) and the placed ones.
    bytes32 private constant _LIVE = bytes32((uint256(1) << (uint8(JobStatus.RUNNING) + 1)) - 1);
    bytes32 private constant _PLACED =
        bytes32((uint256(1) << uint8(JobStatus.META_SCHEDULED)) | (uint256(1) << uint8(JobStatus.SCHEDULED)));

    function _tryPlace(Placement calldata pl, uint16 rulesId) private returns (bytes memory) {
        uint256 jobId = pl.jobId;
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.PENDING) return _unexpected(jobId, status, _bit(JobStatus.PENDING));
        bytes16 termsTag = job.termsTag;
        if (termsTag == 0) return abi.encodeWithSelector(JobNotFound.selector, jobId);
        bytes16 given = bytes16(keccak256(abi.encode(pl.terms)));
        if (given != termsTag) return abi.encodeWithSelector(JobTermsMismatch.selector, jobId, termsTag, given);

        Provider memory p = _providers[pl.provider];
        if (p.status != ProviderStatus.APPROVED) {
            return abi.encodeWithSelector(ProviderNotApproved.selector, pl.provider, p.status);
        }
        Terms calldata t = pl.terms;
        if (t.cpus > p.cpus || t.gpus > p.gpus || t.memMb > p.memMb) {
            return abi.encodeWithSelector(JobDoesNotFit.selector, jobId, pl.provider);
        }
        uint256 price = Billing.pricePerMinute(t.cpus, t.gpus, t.memMb, p.cpuPrice, p.gpuPrice, p.gbPrice);
        if (price > t.maxPricePerMinute) {
            return abi.encodeWithSelector(JobPriceAboveMax.selector, jobId, pl.provider, price, t.maxPricePerMinute);
        }
        // The provider may have raised its prices since the oracle read them: the customer pays
        // at most what the oracle quoted (and less if the provider lowered them).
        if (price > pl.quotedPrice) {
            return abi.encodeWithSelector(JobPriceAboveQuote.selector, jobId, pl.provider, price, pl.quotedPrice);
        }
        // price <= maxPricePerMinute <= type(uint40).max, checked at request. An approved
        // provider has registered, so its id is not zero.
        job.providerId = _keys[pl.provider].id;
        job.status = JobStatus.META_SCHEDULED;
        job.since = uint32(block.timestamp);
        job.pricePerMinute = uint40(price);
        job.rulesId = rulesId;
        emit JobPlaced(jobId, pl.provider, JobStatus.PENDING, JobStatus.META_SCHEDULED, price);
        return "";
    }

    /// @dev `at` is the backend's time of a START or COMPLETE (see `startJob`, `completeJob`).
    /// While SCHEDULED, `since` is the acceptance; while RUNNING, the start: each bounds `at`.
    function _tryStep(uint256 jobId, ProviderAction action, int32 exitCode, bytes32 resultDigest, uint256 at)
        private
        returns (bytes memory err)
    {
        Job storage job = _jobs[jobId];
        JobStatus status;
        bool banned;
        if (action == ProviderAction.ACCEPT) {
            // A ban stops new work at once: a banned provider takes no placement.
            (status, banned, err) = _providerOwns(jobId, job, _bit(JobStatus.META_SCHEDULED));
            if (err.length == 0) err = _notBanned(banned);
            if (err.length == 0) _move(jobId, job, status, JobStatus.SCHEDULED, block.timestamp);
        } else if (action == ProviderAction.START) {
            // Not the work it accepted before a ban: its backend may run the job already, and
            // refusing the START would leave that compute unpaid and the job run twice.
            (status,, err) = _providerOwns(jobId, job, _bit(JobStatus.SCHEDULED));
            if (err.length == 0) _move(jobId, job, status, JobStatus.RUNNING, _within(at, job.since));
        } else {
            // A ban does not stop a running job: the compute delivered before and after it is
            // billed as usual.
            (status,, err) = _providerOwns(jobId, job, _bit(JobStatus.RUNNING));
            if (err.length == 0) {
                JobStatus to = exitCode == 0 ? JobStatus.FINISHED : JobStatus.FAILED;
                _end(jobId, job, status, to, msg.sender, _within(at, job.since), exitCode, resultDigest);
            }
        }
    }

    function _notBanned(bool banned) private view returns (bytes memory) {
        if (banned) return abi.encodeWithSelector(ProviderBanned.selector, msg.sender);
        return "";
    }

    function _tryReclaim(uint256 jobId) private returns (bytes memory) {
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.META_SCHEDULED && status != JobStatus.SCHEDULED) {
            return _missingOr(jobId, job, _unexpected(jobId, status, _PLACED));
        }
        string memory reason;
        bool placed = status == JobStatus.META_SCHEDULED;
        if (placed && _keys[_providerOf(job)].banned) {
            // A banned provider cannot accept: nothing to wait for. A job it accepted before the
            // ban it may still start, within the start timeout as any other.
            reason = "provider banned";
        } else {
            Rules memory r = _rules[job.rulesId]; // the timeouts in force when it was placed
            uint256 deadline = uint256(job.since) + (placed ? r.acceptTimeout : r.startTimeout);
            if (block.timestamp < deadline) {
                return abi.encodeWithSelector(JobTimeoutNotReached.selector, jobId, deadline, block.timestamp);
            }
            reason = placed ? "not accepted in time" : "not started in time";
        }
        _returnToPending(jobId, job, status, reason);
        return "";
    }

    function _tryFailSilent(uint256 jobId, uint256 lastSeen) private returns (bytes memory) {
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.RUNNING) {
            return _missingOr(jobId, job, _unexpected(jobId, status, _bit(JobStatus.RUNNING)));
        }
        // The provider stopped reporting. Its last sign of life is the evidence of compute
        // delivered: the job is billed up to it (never past now, never before the start), and
        // the customer gets the rest back.
        _end(jobId, job, status, JobStatus.FAILED, _providerOf(job), _within(lastSeen, job.since), NO_EXIT_CODE, 0);
        return "";
    }

    function _tryExpire(uint256 jobId) private returns (bytes memory) {
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.RUNNING) {
            return _missingOr(jobId, job, _unexpected(jobId, status, _bit(JobStatus.RUNNING)));
        }
        uint256 until = _fundedUntil(job.since, job.pricePerMinute, job.escrow);
        if (block.timestamp < until) {
            return abi.encodeWithSelector(JobStillFunded.selector, jobId, until, block.timestamp);
        }
        _end(jobId, job, status, JobStatus.OUT_OF_CREDITS, _providerOf(job), block.timestamp, NO_EXIT_CODE, 0);
        return "";
    }

    /// @dev Checks that the caller is the job's provider and the job is in one of `expected`;
    /// also tells whether the caller is banned.
    function _providerOwns(uint256 jobId, Job storage job, bytes32 expected)
        private
        view
        returns (JobStatus status, bool banned, bytes memory)
    {
        uint32 providerId = job.providerId;
        status = job.status;
        // Id 0 is nobody's: an unregistered caller never owns a job, not even a PENDING one.
        ProviderKey memory caller = _keys[msg.sender];
        banned = caller.banned;
        if (providerId != caller.id || caller.id == 0) {
            // A job never placed has no provider; tell that apart from someone else's job.
            if (job.termsTag == 0) return (status, banned, abi.encodeWithSelector(JobNotFound.selector, jobId));
            return (
                status,
                banned,
                abi.encodeWithSelector(JobNotAssignedProvider.selector, jobId, msg.sender, _providerAddrs[providerId])
            );
        }
        if (expected & _bit(status) == 0) return (status, banned, _unexpected(jobId, status, expected));
        return (status, banned, "");
    }

    /// @dev Checks that the caller is the live job's customer.
    function _customerOwns(uint256 jobId, Job storage job) private view returns (bytes memory) {
        address customer = job.customer;
        if (customer == msg.sender) return "";
        // An ended job's money slot is cleared: say it ended rather than "not yours".
        JobStatus status = job.status;
        if (_isTerminal(status)) return _unexpected(jobId, status, _LIVE);
        return _missingOr(jobId, job, abi.encodeWithSelector(JobNotCustomer.selector, jobId, msg.sender, customer));
    }

    /// @dev `err`, unless the job does not exist at all (checked only on error paths).
    function _missingOr(uint256 jobId, Job storage job, bytes memory err) private view returns (bytes memory) {
        if (job.termsTag == 0) return abi.encodeWithSelector(JobNotFound.selector, jobId);
        return err;
    }

    function _providerOf(Job storage job) private view returns (address) {
        return _providerAddrs[job.providerId];
    }

    /// @dev A status change that moves no credits; the job is in `to` since `since`.
    function _move(uint256 jobId, Job storage job, JobStatus from, JobStatus to, uint256 since) private {
        job.status = to;
        job.since = uint32(since); // at most the block's time
        emit JobStatusChanged(jobId, from, to, since);
    }

    /// @dev A time a party reported, clamped between `earliest` and the block's time: a clock
    /// running ahead of the chain's, or a report older than what it may claim, is bounded rather
    /// than refused (refusing would strand the job). `earliest` is never after the block.
    function _within(uint256 t, uint256 earliest) private view returns (uint256) {
        if (t > block.timestamp) return block.timestamp;
        return t < earliest ? earliest : t;
    }

    function _returnToPending(uint256 jobId, Job storage job, JobStatus from, string memory reason) private {
        address provider = _providerOf(job);
        // Clear slot 0 but for the tag: PENDING has no provider, price, fee or timer.
        job.providerId = 0;
        job.status = JobStatus.PENDING;
        job.since = 0;
        job.pricePerMinute = 0;
        job.rulesId = 0;
        emit JobReturned(jobId, provider, from, JobStatus.PENDING, reason);
    }

    /// @dev Ends a job: bills the running time up to `until` to `payee` (the job's provider;
    /// address(0) bills nothing), takes the fee from it, refunds the rest. The caller passes the
    /// provider because it often has it at hand (a completion is sent by it), which saves a cold
    /// read. `until` is now, except for a completion (the backend's end) and a silent provider's
    /// job (its last sign of life), each clamped by `_within`.
    function _end(
        uint256 jobId,
        Job storage job,
        JobStatus from,
        JobStatus to,
        address payee,
        uint256 until,
        int256 exitCode,
        bytes32 resultDigest
    ) private {
        uint256 escrow = job.escrow;
        uint256 cost;
        if (payee != address(0)) cost = Billing.cost(job.pricePerMinute, until - job.since, escrow);
        uint256 feeBps;
        {
            // Scoped: the stack holds every argument of JobEnded below.
            address customer = job.customer;
            if (cost != 0) feeBps = _rules[job.rulesId].feeBps;

            job.status = to;
            job.since = uint32(block.timestamp);
            job.customer = address(0);
            job.escrow = 0;

            if (escrow != cost) _balances[customer] += escrow - cost;
        }
        uint256 fee;
        if (cost != 0) {
            if (feeBps != 0) {
                fee = Billing.fee(cost, feeBps);
                accruedFees += fee;
            }
            _balances[payee] += cost - fee;
        }
        emit JobEnded(jobId, from, to, cost - fee, fee, escrow - cost, exitCode, resultDigest, until);
    }

    /// @dev Takes `amount` from `account`'s balance (into an escrow or a fee), or reverts.
    function _debit(address account, uint256 amount) private {
        uint256 balance = _balances[account];
        if (balance < amount) revert MarketInsufficientBalance(account, balance, amount);
        unchecked {
            _balances[account] = balance - amount;
        }
    }

    /// @dev The first second at which a job running since `since` has spent its escrow; a free
    /// job never runs dry.
    function _fundedUntil(uint256 since, uint256 price, uint256 escrow) private pure returns (uint256) {
        // A zero price (a free provider) is exact: it only guards the division in fundedSeconds.
        // slither-disable-next-line incorrect-equality
        if (price == 0) return type(uint256).max;
        return since + Billing.fundedSeconds(escrow, price);
    }

    // ================================================================ helpers

    function _isTerminal(JobStatus s) private pure returns (bool) {
        return uint8(s) > uint8(JobStatus.RUNNING);
    }

    function _bit(JobStatus s) private pure returns (bytes32) {
        return bytes32(uint256(1) << uint8(s));
    }

    function _unexpected(uint256 jobId, JobStatus current, bytes32 expected) private pure returns (bytes memory) {
        return abi.encodeWithSelector(JobUnexpectedStatus.selector, jobId, current, expected);
    }

    function _report(uint256 index, uint256 jobId, bytes memory err) private returns (uint256 done) {
        // Empty means success (see the state machine internals); the length is not a time.
        // slither-disable-next-line incorrect-equality
        if (err.length == 0) return 1;
        emit BatchItemSkipped(index, jobId, err);
        return 0;
    }

    function _orRevert(bytes memory err) private pure {
        if (err.length != 0) {
            assembly ("memory-safe") {
                revert(add(err, 0x20), mload(err))
            }
        }
    }
}
