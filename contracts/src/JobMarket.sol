// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {
    IJobMarket,
    JobStatus,
    ProviderStatus,
    Hardware,
    Prices,
    Terms,
    Placement,
    ProviderAction,
    ProviderStep,
    JobView
} from "./interfaces/IJobMarket.sol";

/// @title JobMarket
/// @notice Credits, the provider registry and the job state machine of metascheduler.
/// @dev Credits live inside this contract as balances: a job's lifecycle moves numbers between
/// balances and escrows and never transfers tokens, which keeps it cheap. Invariant (tested):
/// `credit.balanceOf(this) == sum(balances) + sum(escrow of live jobs) + accruedFees`.
///
/// Billing: a running job costs `pricePerMinute * elapsedSeconds / 60` (rounded down, in the
/// customer's favour), capped by its escrow. `metascheduler/billing.py` mirrors this arithmetic.
contract JobMarket is IJobMarket, AccessControl {
    using SafeERC20 for IERC20;

    uint256 public constant MAX_FEE_BPS = 2_000;
    uint256 public constant MAX_SPEC_BYTES = 16_384;
    int256 private constant NO_EXIT_CODE = -1;

    /// @dev Job record, two slots.
    /// slot 0, the state: termsTag (128) | providerId (32) | status (8) | since (32) |
    ///   pricePerMinute (40) | feeBps (16). Everything a placement, an accept or a start reads
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
    /// The fee is fixed with the price at placement, so an admin cannot change a running deal.
    struct Job {
        bytes16 termsTag;
        uint32 providerId;
        JobStatus status;
        uint32 since;
        uint40 pricePerMinute;
        uint16 feeBps;
        address customer;
        uint96 escrow;
    }

    /// @dev Provider record, one slot: status (8) | nodes (16) | cpus (32) | gpus (24) | memMb (40)
    /// | cpuPrice (40) | gpuPrice (40) | gbPrice (40).
    struct Provider {
        ProviderStatus status;
        uint16 nodes;
        uint32 cpus;
        uint24 gpus;
        uint40 memMb;
        uint40 cpuPrice;
        uint40 gpuPrice;
        uint40 gbPrice;
    }

    /// @dev Settings read on the hot paths, one slot: oracle (160) | jobCount (64) | feeBps (16) |
    /// paused (8). A request reads it for `paused` and the next id, a placement for the oracle's
    /// address and the fee: one cold read each instead of three.
    struct Config {
        address oracle;
        uint64 jobCount;
        uint16 feeBps;
        bool paused;
    }

    /// @dev Placement timeouts, read only when reclaiming: acceptTimeout (32) | startTimeout (32).
    struct Timeouts {
        uint32 accept;
        uint32 start;
    }

    IERC20 public immutable credit;

    Config private _config;
    Timeouts private _timeouts;
    uint256 public accruedFees;
    mapping(address account => uint256) private _balances;
    mapping(address provider => Provider) private _providers;
    /// @dev A provider's number, given at its first registration and kept for good (also across
    /// removal), so that a job stores 32 bits for its provider instead of an address.
    mapping(address provider => uint32) private _providerIds;
    mapping(uint32 providerId => address) private _providerAddrs;
    uint32 private _providerCount;
    mapping(uint256 jobId => Job) private _jobs;

    /// @param credit_ The ERC-20 (with permit) that credits are paid in.
    /// @param admin Holder of DEFAULT_ADMIN_ROLE: approves providers, sets fees and timeouts, pauses.
    /// @param oracle_ The oracle: places jobs, reclaims stale placements, fails silent providers' jobs.
    /// @param acceptTimeout Seconds a provider has to accept a placement before the oracle may reclaim it.
    /// @param startTimeout Seconds a queued (SCHEDULED) job may wait to start before it may be reclaimed.
    constructor(IERC20 credit_, address admin, address oracle_, uint32 acceptTimeout, uint32 startTimeout) {
        credit = credit_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _config = Config({oracle: oracle_, jobCount: 0, feeBps: 0, paused: false});
        _timeouts = Timeouts(acceptTimeout, startTimeout);
        emit OracleChanged(address(0), oracle_);
        emit TimeoutsChanged(acceptTimeout, startTimeout);
    }

    /// @dev Only the oracle; returns the config slot, which the caller usually needs too.
    function _onlyOracle() private view returns (Config memory cfg) {
        cfg = _config;
        if (msg.sender != cfg.oracle) revert MarketNotOracle(msg.sender, cfg.oracle);
    }

    // ================================================================ credits

    /// @inheritdoc IJobMarket
    function deposit(uint256 amount) external {
        _deposit(amount);
    }

    /// @inheritdoc IJobMarket
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external {
        // A permit seen in the mempool can be front-run by anyone; the allowance it set still
        // serves this deposit, so a failed permit is not fatal (OpenZeppelin's advice).
        try IERC20Permit(address(credit)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(amount);
    }

    /// @inheritdoc IJobMarket
    function withdraw(uint256 amount) external {
        if (amount == 0) revert MarketZeroAmount();
        uint256 balance = _balances[msg.sender];
        if (balance < amount) revert MarketInsufficientBalance(msg.sender, balance, amount);
        unchecked {
            _balances[msg.sender] = balance - amount;
        }
        emit Withdrawn(msg.sender, amount);
        credit.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IJobMarket
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @notice Admin: moves `amount` of accrued fees to `to`'s wallet.
    function withdrawFees(address to, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (amount == 0) revert MarketZeroAmount();
        uint256 fees = accruedFees;
        if (fees < amount) revert MarketInsufficientBalance(address(this), fees, amount);
        accruedFees = fees - amount;
        emit FeesWithdrawn(to, amount);
        credit.safeTransfer(to, amount);
    }

    function _deposit(uint256 amount) private {
        if (amount == 0) revert MarketZeroAmount();
        _balances[msg.sender] += amount;
        emit Deposited(msg.sender, amount);
        credit.safeTransferFrom(msg.sender, address(this), amount);
    }

    // ================================================================ providers

    /// @inheritdoc IJobMarket
    function registerProvider(Hardware calldata hardware, Prices calldata prices, string[] calldata labels) external {
        if (hardware.nodes == 0 || hardware.cpus == 0) revert ProviderInvalidHardware();
        Provider storage p = _providers[msg.sender];
        ProviderStatus status = p.status;
        if (status == ProviderStatus.BANNED) revert ProviderBanned(msg.sender);
        if (status == ProviderStatus.NONE) status = ProviderStatus.REGISTERED;
        if (_providerIds[msg.sender] == 0) {
            uint32 id = ++_providerCount; // 2^32 registrations will not happen
            _providerIds[msg.sender] = id;
            _providerAddrs[id] = msg.sender;
        }
        _providers[msg.sender] = Provider({
            status: status,
            nodes: hardware.nodes,
            cpus: hardware.cpus,
            gpus: hardware.gpus,
            memMb: hardware.memMb,
            cpuPrice: prices.cpu,
            gpuPrice: prices.gpu,
            gbPrice: prices.gb
        });
        emit ProviderRegistered(msg.sender, hardware, prices, labels);
    }

    /// @inheritdoc IJobMarket
    function approveProvider(address provider) external onlyRole(DEFAULT_ADMIN_ROLE) {
        ProviderStatus from = _providers[provider].status;
        if (from != ProviderStatus.REGISTERED) revert ProviderNotFound(provider);
        _providers[provider].status = ProviderStatus.APPROVED;
        emit ProviderStatusChanged(provider, from, ProviderStatus.APPROVED);
    }

    /// @inheritdoc IJobMarket
    function banProvider(address provider) external onlyRole(DEFAULT_ADMIN_ROLE) {
        ProviderStatus from = _providers[provider].status;
        if (from == ProviderStatus.NONE || from == ProviderStatus.BANNED) revert ProviderNotFound(provider);
        _providers[provider].status = ProviderStatus.BANNED;
        emit ProviderStatusChanged(provider, from, ProviderStatus.BANNED);
    }

    /// @inheritdoc IJobMarket
    function removeProvider(address provider) external onlyRole(DEFAULT_ADMIN_ROLE) {
        ProviderStatus from = _providers[provider].status;
        if (from == ProviderStatus.NONE) revert ProviderNotFound(provider);
        // A ban is for good: removing the record would let the provider register afresh.
        if (from == ProviderStatus.BANNED) revert ProviderBanned(provider);
        delete _providers[provider];
        emit ProviderStatusChanged(provider, from, ProviderStatus.NONE);
    }

    /// @notice A provider's record: standing, hardware and prices.
    function getProvider(address provider)
        external
        view
        returns (ProviderStatus status, Hardware memory hardware, Prices memory prices)
    {
        Provider memory p = _providers[provider];
        return (p.status, Hardware(p.nodes, p.cpus, p.gpus, p.memMb), Prices(p.cpuPrice, p.gpuPrice, p.gbPrice));
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
        _debit(msg.sender, escrow);

        unchecked {
            jobId = cfg.jobCount + 1; // 2^64 jobs will not be requested
        }
        _config.jobCount = uint64(jobId);
        Job storage job = _jobs[jobId];
        job.termsTag = bytes16(keccak256(abi.encode(Terms(keccak256(spec), cpus, gpus, memMb, maxPricePerMinute))));
        job.customer = msg.sender;
        job.escrow = uint96(escrow);
        emit JobRequested(jobId, msg.sender, escrow, maxPricePerMinute, cpus, gpus, memMb, spec);
    }

    /// @inheritdoc IJobMarket
    function topUp(uint256 jobId, uint256 amount) external {
        Job storage job = _jobs[jobId];
        _orRevert(_customerOwns(jobId, job));
        uint256 escrow = job.escrow;
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
            NO_EXIT_CODE
        );
    }

    // ================================================================ oracle

    /// @inheritdoc IJobMarket
    function placeJob(Placement calldata placement) external {
        _orRevert(_place(placement, _onlyOracle().feeBps));
    }

    /// @inheritdoc IJobMarket
    function placeJobs(Placement[] calldata placements) external returns (uint256 done) {
        uint16 feeBps = _onlyOracle().feeBps;
        for (uint256 i; i < placements.length; ++i) {
            done += _report(i, placements[i].jobId, _place(placements[i], feeBps));
        }
    }

    /// @inheritdoc IJobMarket
    function reclaimJobs(uint256[] calldata jobIds) external returns (uint256 done) {
        _onlyOracle();
        Timeouts memory timeouts = _timeouts;
        for (uint256 i; i < jobIds.length; ++i) {
            done += _report(i, jobIds[i], _reclaim(jobIds[i], timeouts));
        }
    }

    /// @inheritdoc IJobMarket
    function failJobs(uint256[] calldata jobIds) external returns (uint256 done) {
        _onlyOracle();
        for (uint256 i; i < jobIds.length; ++i) {
            done += _report(i, jobIds[i], _failSilent(jobIds[i]));
        }
    }

    // ================================================================ providers' jobs

    /// @inheritdoc IJobMarket
    function acceptJob(uint256 jobId) external {
        _orRevert(_step(jobId, ProviderAction.ACCEPT, 0));
    }

    /// @inheritdoc IJobMarket
    function startJob(uint256 jobId) external {
        _orRevert(_step(jobId, ProviderAction.START, 0));
    }

    /// @inheritdoc IJobMarket
    function completeJob(uint256 jobId, int32 exitCode) external {
        _orRevert(_step(jobId, ProviderAction.COMPLETE, exitCode));
    }

    /// @inheritdoc IJobMarket
    function providerBatch(ProviderStep[] calldata steps) external returns (uint256 done) {
        for (uint256 i; i < steps.length; ++i) {
            ProviderStep calldata s = steps[i];
            done += _report(i, s.jobId, _step(s.jobId, s.action, s.exitCode));
        }
    }

    /// @inheritdoc IJobMarket
    function refuseJob(uint256 jobId, string calldata reason) external {
        Job storage job = _jobs[jobId];
        (JobStatus status, bytes memory err) = _providerOwns(jobId, job, _PLACED);
        _orRevert(err);
        _returnToPending(jobId, job, status, reason);
    }

    // ================================================================ anyone

    /// @inheritdoc IJobMarket
    function expireJobs(uint256[] calldata jobIds) external returns (uint256 done) {
        for (uint256 i; i < jobIds.length; ++i) {
            done += _report(i, jobIds[i], _expire(jobIds[i]));
        }
    }

    // ================================================================ admin

    /// @notice Admin: hands the oracle's role to `newOracle`.
    function setOracle(address newOracle) external onlyRole(DEFAULT_ADMIN_ROLE) {
        emit OracleChanged(_config.oracle, newOracle);
        _config.oracle = newOracle;
    }

    /// @notice Admin: sets the platform fee, taken from what providers earn (at most MAX_FEE_BPS).
    /// It applies to jobs placed from now on; placed jobs keep the fee they were placed with.
    function setFee(uint16 bps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (bps > MAX_FEE_BPS) revert MarketFeeTooHigh(bps, MAX_FEE_BPS);
        emit FeeChanged(_config.feeBps, bps);
        _config.feeBps = bps;
    }

    /// @notice Admin: sets how long placements may wait to be accepted and to start.
    function setTimeouts(uint32 acceptTimeout, uint32 startTimeout) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _timeouts = Timeouts(acceptTimeout, startTimeout);
        emit TimeoutsChanged(acceptTimeout, startTimeout);
    }

    /// @notice Admin: stops new job requests. Everything else (ending, cancelling, withdrawing) goes on.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _config.paused = true;
        emit RequestsPaused(msg.sender);
    }

    /// @notice Admin: accepts new job requests again.
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
            j.feeBps,
            j.escrow,
            j.termsTag
        );
    }

    /// @inheritdoc IJobMarket
    function jobCount() external view returns (uint256) {
        return _config.jobCount;
    }

    /// @notice The oracle, fee (basis points), paused flag and placement timeouts.
    function config()
        external
        view
        returns (address oracle, uint256 feeBps, bool paused, uint256 acceptTimeout, uint256 startTimeout)
    {
        Config memory c = _config;
        Timeouts memory t = _timeouts;
        return (c.oracle, c.feeBps, c.paused, t.accept, t.start);
    }

    /// @inheritdoc IJobMarket
    function quote(address provider, uint32 cpus, uint32 gpus, uint32 memMb) external view returns (uint256) {
        return _pricePerMinute(_providers[provider], cpus, gpus, memMb);
    }

    /// @inheritdoc IJobMarket
    function fundedUntil(uint256 jobId) external view returns (uint256) {
        Job memory j = _jobs[jobId];
        // An existence check on a keccak256 hash, not a balance or a time (see getJob).
        // slither-disable-next-line incorrect-equality
        if (j.termsTag == 0) revert JobNotFound(jobId);
        if (j.status != JobStatus.RUNNING) revert JobUnexpectedStatus(jobId, j.status, _bit(JobStatus.RUNNING));
        return _fundedUntil(j.since, j.pricePerMinute, j.escrow);
    }

    // ================================================================ state machine internals
    // Each step returns the custom error it would revert with (ABI-encoded), or empty bytes on
    // success: single calls revert with it, batches skip the item and report it.

    bytes32 private constant _LIVE = bytes32(uint256(0x0f)); // PENDING..RUNNING
    bytes32 private constant _PLACED = bytes32(uint256(0x06)); // META_SCHEDULED, SCHEDULED

    function _place(Placement calldata pl, uint16 feeBps) private returns (bytes memory) {
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
        uint256 price = _pricePerMinute(p, t.cpus, t.gpus, t.memMb);
        if (price > t.maxPricePerMinute) {
            return abi.encodeWithSelector(JobPriceAboveMax.selector, jobId, pl.provider, price, t.maxPricePerMinute);
        }
        // price <= maxPricePerMinute <= type(uint40).max, checked at request. An approved
        // provider has registered, so its id is not zero.
        job.providerId = _providerIds[pl.provider];
        job.status = JobStatus.META_SCHEDULED;
        job.since = uint32(block.timestamp);
        job.pricePerMinute = uint40(price);
        job.feeBps = feeBps;
        emit JobPlaced(jobId, pl.provider, JobStatus.PENDING, JobStatus.META_SCHEDULED, price);
        return "";
    }

    function _step(uint256 jobId, ProviderAction action, int32 exitCode) private returns (bytes memory err) {
        Job storage job = _jobs[jobId];
        JobStatus status;
        if (action == ProviderAction.ACCEPT) {
            (status, err) = _providerOwns(jobId, job, _bit(JobStatus.META_SCHEDULED));
            if (err.length == 0) _move(jobId, job, status, JobStatus.SCHEDULED);
        } else if (action == ProviderAction.START) {
            (status, err) = _providerOwns(jobId, job, _bit(JobStatus.SCHEDULED));
            if (err.length == 0) _move(jobId, job, status, JobStatus.RUNNING);
        } else {
            (status, err) = _providerOwns(jobId, job, _bit(JobStatus.RUNNING));
            if (err.length == 0) {
                _end(jobId, job, status, exitCode == 0 ? JobStatus.FINISHED : JobStatus.FAILED, msg.sender, exitCode);
            }
        }
    }

    function _reclaim(uint256 jobId, Timeouts memory timeouts) private returns (bytes memory) {
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.META_SCHEDULED && status != JobStatus.SCHEDULED) {
            return _missingOr(jobId, job, _unexpected(jobId, status, _PLACED));
        }
        uint256 deadline = uint256(job.since) + (status == JobStatus.META_SCHEDULED ? timeouts.accept : timeouts.start);
        if (block.timestamp < deadline) {
            return abi.encodeWithSelector(JobTimeoutNotReached.selector, jobId, deadline, block.timestamp);
        }
        _returnToPending(
            jobId, job, status, status == JobStatus.META_SCHEDULED ? "not accepted in time" : "not started in time"
        );
        return "";
    }

    function _failSilent(uint256 jobId) private returns (bytes memory) {
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.RUNNING) {
            return _missingOr(jobId, job, _unexpected(jobId, status, _bit(JobStatus.RUNNING)));
        }
        // The provider stopped reporting: nobody can show the compute was delivered, so the
        // customer gets everything back (economy of compute: no paying for what was not received).
        _end(jobId, job, status, JobStatus.FAILED, address(0), NO_EXIT_CODE);
        return "";
    }

    function _expire(uint256 jobId) private returns (bytes memory) {
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.RUNNING) {
            return _missingOr(jobId, job, _unexpected(jobId, status, _bit(JobStatus.RUNNING)));
        }
        uint256 until = _fundedUntil(job.since, job.pricePerMinute, job.escrow);
        if (block.timestamp < until) {
            return abi.encodeWithSelector(JobStillFunded.selector, jobId, until, block.timestamp);
        }
        _end(jobId, job, status, JobStatus.OUT_OF_CREDITS, _providerOf(job), NO_EXIT_CODE);
        return "";
    }

    /// @dev Checks that the caller is the job's provider and the job is in one of `expected`.
    function _providerOwns(uint256 jobId, Job storage job, bytes32 expected)
        private
        view
        returns (JobStatus status, bytes memory)
    {
        uint32 providerId = job.providerId;
        status = job.status;
        // Id 0 is nobody's: an unregistered caller never owns a job, not even a PENDING one.
        uint32 callerId = _providerIds[msg.sender];
        if (providerId != callerId || callerId == 0) {
            // A job never placed has no provider; tell that apart from someone else's job.
            if (job.termsTag == 0) return (status, abi.encodeWithSelector(JobNotFound.selector, jobId));
            return (
                status,
                abi.encodeWithSelector(JobNotAssignedProvider.selector, jobId, msg.sender, _providerAddrs[providerId])
            );
        }
        if (expected & _bit(status) == 0) return (status, _unexpected(jobId, status, expected));
        return (status, "");
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

    /// @dev A status change that moves no credits.
    function _move(uint256 jobId, Job storage job, JobStatus from, JobStatus to) private {
        job.status = to;
        job.since = uint32(block.timestamp);
        emit JobStatusChanged(jobId, from, to);
    }

    function _returnToPending(uint256 jobId, Job storage job, JobStatus from, string memory reason) private {
        address provider = _providerOf(job);
        // Clear slot 0 but for the tag: PENDING has no provider, price, fee or timer.
        job.providerId = 0;
        job.status = JobStatus.PENDING;
        job.since = 0;
        job.pricePerMinute = 0;
        job.feeBps = 0;
        emit JobReturned(jobId, provider, from, JobStatus.PENDING, reason);
    }

    /// @dev Ends a job: bills the running time to `payee` (the job's provider; address(0) bills
    /// nothing), takes the fee from it, refunds the rest. The caller passes the provider because
    /// it often has it at hand (a completion is sent by it), which saves a cold read.
    function _end(uint256 jobId, Job storage job, JobStatus from, JobStatus to, address payee, int256 exitCode)
        private
    {
        uint256 escrow = job.escrow;
        uint256 cost;
        if (payee != address(0)) cost = _cost(job.pricePerMinute, block.timestamp - job.since, escrow);
        address customer = job.customer;

        uint256 feeBps = job.feeBps;

        job.status = to;
        job.since = uint32(block.timestamp);
        job.customer = address(0);
        job.escrow = 0;

        uint256 fee;
        if (cost != 0) {
            if (feeBps != 0) {
                fee = (cost * feeBps) / 10_000;
                accruedFees += fee;
            }
            _balances[payee] += cost - fee;
        }
        uint256 refund = escrow - cost;
        if (refund != 0) _balances[customer] += refund;
        emit JobEnded(jobId, from, to, cost - fee, fee, refund, exitCode);
    }

    function _debit(address account, uint256 amount) private {
        uint256 balance = _balances[account];
        if (balance < amount) revert MarketInsufficientBalance(account, balance, amount);
        unchecked {
            _balances[account] = balance - amount;
        }
    }

    // ================================================================ arithmetic (mirrored in billing.py)

    function _pricePerMinute(Provider memory p, uint256 cpus, uint256 gpus, uint256 memMb)
        private
        pure
        returns (uint256)
    {
        return cpus * p.cpuPrice + gpus * p.gpuPrice + (memMb * p.gbPrice) / 1024;
    }

    function _cost(uint256 pricePerMinute, uint256 elapsed, uint256 escrow) private pure returns (uint256) {
        uint256 full = (pricePerMinute * elapsed) / 60;
        return full < escrow ? full : escrow;
    }

    /// @dev The first second at which `price * elapsed >= escrow * 60`; a free job never runs dry.
    function _fundedUntil(uint256 since, uint256 price, uint256 escrow) private pure returns (uint256) {
        // A zero price (a free provider) is exact: it only guards the division below.
        // slither-disable-next-line incorrect-equality
        if (price == 0) return type(uint256).max;
        return since + (escrow * 60 + price - 1) / price;
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
