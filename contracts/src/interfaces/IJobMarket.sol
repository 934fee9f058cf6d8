// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @notice A job's place in the on-chain state machine. The numeric values are part of the ABI
/// and mirrored by `metascheduler.chain.types.JobStatus` (a test proves they agree).
enum JobStatus {
    PENDING,
    META_SCHEDULED,
    SCHEDULED,
    RUNNING,
    CANCELLED,
    FINISHED,
    FAILED,
    OUT_OF_CREDITS
}

/// @notice A provider's standing with the admin.
enum ProviderStatus {
    NONE,
    REGISTERED,
    APPROVED,
    BANNED
}

/// @notice What a provider declares it has, summed over its cluster.
struct Hardware {
    uint16 nodes;
    uint32 cpus;
    uint24 gpus;
    uint40 memMb;
}

/// @notice A provider's prices, in credit units (6 decimals) per minute of one CPU, one GPU and
/// one GB (1024 MB) of memory.
struct Prices {
    uint40 cpu;
    uint40 gpu;
    uint40 gb;
}

/// @notice The terms a job was requested under. The contract stores only their tag, the first 16
/// bytes of keccak256(abi.encode(terms)); the oracle passes them back when it places the job, and
/// the contract checks them against the tag.
/// @param specHash keccak256 of the canonical job spec bytes emitted in `JobRequested`.
/// @param cpus Total CPUs (tasks x CPUs per task). @param gpus Total GPUs. @param memMb Total memory.
/// @param maxPricePerMinute The most the customer accepts to pay per minute.
struct Terms {
    bytes32 specHash;
    uint32 cpus;
    uint32 gpus;
    uint32 memMb;
    uint256 maxPricePerMinute;
}

/// @notice One placement decision of the oracle. `quotedPrice` is the price per minute the
/// oracle saw when it chose the provider: the placement fails if the provider's price is now
/// higher (a provider raising its prices after the quote cannot bill more than was quoted).
struct Placement {
    uint256 jobId;
    address provider;
    Terms terms;
    uint256 quotedPrice;
}

/// @notice A running job whose provider fell silent, with the last time the provider was seen
/// alive (its last signed heartbeat). `failJobs` bills it up to that time, no later than now.
struct SilentJob {
    uint256 jobId;
    uint256 lastSeen;
}

/// @notice What a provider does to one of its jobs in a batch.
enum ProviderAction {
    ACCEPT,
    START,
    COMPLETE
}

/// @notice One item of a provider's batch. `exitCode` and `resultDigest` are read by COMPLETE
/// only: exit code 0 ends the job FINISHED, anything else FAILED; the digest is emitted in
/// `JobEnded`. `at` is the backend's time of the step (Unix seconds, in the chain's clock), read
/// by START (the job's start: metering starts there) and COMPLETE (its end: billed up to there);
/// see `startJob` and `completeJob` for how it is bounded.
struct ProviderStep {
    uint256 jobId;
    ProviderAction action;
    int32 exitCode;
    bytes32 resultDigest;
    uint256 at;
}

/// @notice A job as stored, widened for reading. `customer` and `escrow` read zero once the job
/// has ended (the job's events keep them).
struct JobView {
    address customer;
    address provider;
    JobStatus status;
    uint256 since;
    uint256 pricePerMinute;
    uint256 feeBps;
    uint256 escrow;
    bytes16 termsTag;
}

/// @title The job market: credits, providers and the job state machine of metascheduler.
/// @notice Every credit movement and every status change emits exactly one event, so that a job's
/// history and every credit's path can be rebuilt from logs alone. Roles are OpenZeppelin's
/// `AccessControl`: the admin is the holder of `DEFAULT_ADMIN_ROLE`.
interface IJobMarket is IAccessControl {
    // ---------------------------------------------------------------- events: credits

    /// @notice `amount` credits moved from `account`'s wallet into its balance here.
    event Deposited(address indexed account, uint256 amount);
    /// @notice `amount` credits moved from `account`'s balance here to its wallet.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice The admin moved `amount` of accrued platform fees to `to`'s wallet.
    event FeesWithdrawn(address indexed to, uint256 amount);
    /// @notice The admin moved `amount` credits that reached the market outside `deposit` (a plain
    /// ERC-20 transfer) to `to`'s wallet. No balance, escrow or fee was touched.
    event SurplusSwept(address indexed to, uint256 amount);

    // ---------------------------------------------------------------- events: providers

    /// @notice A provider registered or updated its hardware, prices and labels.
    event ProviderRegistered(address indexed provider, Hardware hardware, Prices prices, string[] labels);
    /// @notice The admin changed a provider's standing (NONE means removed).
    event ProviderStatusChanged(address indexed provider, ProviderStatus from, ProviderStatus to);

    // ---------------------------------------------------------------- events: jobs

    /// @notice A customer requested a job: `escrow` credits moved from its balance into the
    /// job's escrow, and `requestFee` (not refundable) to the platform's accrued fees. `spec` is
    /// the canonical job spec, whole. The job is PENDING.
    event JobRequested(
        uint256 indexed jobId,
        address indexed customer,
        uint256 escrow,
        uint256 requestFee,
        uint256 maxPricePerMinute,
        uint32 cpus,
        uint32 gpus,
        uint32 memMb,
        bytes spec
    );
    /// @notice The oracle placed a job on `provider` at `pricePerMinute` (PENDING -> META_SCHEDULED).
    event JobPlaced(
        uint256 indexed jobId, address indexed provider, JobStatus from, JobStatus to, uint256 pricePerMinute
    );
    /// @notice A status change that moves no credits (META_SCHEDULED -> SCHEDULED -> RUNNING).
    /// `since` is the time the job entered `to` as the contract records it: the block's time for
    /// an acceptance, the backend's start (as bounded) for a start, where metering begins.
    event JobStatusChanged(uint256 indexed jobId, JobStatus from, JobStatus to, uint256 since);
    /// @notice A placed job went back to PENDING: refused by its provider, reclaimed after a
    /// timeout, or reclaimed (not yet accepted) because its provider was banned. Nothing was billed.
    event JobReturned(uint256 indexed jobId, address indexed provider, JobStatus from, JobStatus to, string reason);
    /// @notice A job reached a terminal state. Its escrow was split: `paid` to the provider's
    /// balance, `fee` to the platform, `refunded` to the customer's balance (they sum to the escrow).
    /// `exitCode` is the provider's report for FINISHED/FAILED, else -1. `resultDigest` is what
    /// the provider's completion committed to (the hash of the job's encrypted outputs and final
    /// log chain), zero for any other ending; it is not stored. `billedUntil` is the time the run
    /// was billed up to (from the start in the RUNNING `JobStatusChanged`): the backend's end (as
    /// bounded) for a completion, the last sign of life for a silent provider's job, else the
    /// block's time.
    event JobEnded(
        uint256 indexed jobId,
        JobStatus from,
        JobStatus to,
        uint256 paid,
        uint256 fee,
        uint256 refunded,
        int256 exitCode,
        bytes32 resultDigest,
        uint256 billedUntil
    );
    /// @notice The customer added `amount` to a live job's escrow, now `escrow`.
    event JobToppedUp(uint256 indexed jobId, uint256 amount, uint256 escrow);
    /// @notice Item `index` of a batch was skipped; `error` is the custom error it would have
    /// reverted with. The rest of the batch went through.
    event BatchItemSkipped(uint256 index, uint256 indexed jobId, bytes error);

    // ---------------------------------------------------------------- events: admin

    /// @notice The oracle's role moved from `from` to `to` (from address(0) at deployment).
    event OracleChanged(address indexed from, address indexed to);
    /// @notice The admin set the platform fee, in basis points of what providers earn, for jobs
    /// placed from now on (placed jobs keep theirs).
    event FeeChanged(uint256 oldBps, uint256 newBps);
    /// @notice The placement timeouts (seconds to accept, seconds from acceptance to start) for
    /// jobs placed from now on; also emitted at deployment.
    event TimeoutsChanged(uint256 acceptTimeout, uint256 startTimeout);
    /// @notice The admin set the fee every new request pays to the platform (not refundable).
    event RequestFeeChanged(uint256 oldFee, uint256 newFee);
    /// @notice The admin `by` stopped new job requests; everything else goes on.
    event RequestsPaused(address by);
    /// @notice The admin `by` let new job requests in again.
    event RequestsUnpaused(address by);

    // ---------------------------------------------------------------- errors

    /// @notice The job does not exist.
    error JobNotFound(uint256 jobId);
    /// @notice The job is in `current`; the call needs one of `expectedStates` (bit i = JobStatus i).
    error JobUnexpectedStatus(uint256 jobId, JobStatus current, bytes32 expectedStates);
    /// @notice Only the job's customer may do this.
    error JobNotCustomer(uint256 jobId, address caller, address customer);
    /// @notice Only the provider the job is placed on may do this.
    error JobNotAssignedProvider(uint256 jobId, address caller, address provider);
    /// @notice The terms passed with a placement are not the ones the job was requested under.
    error JobTermsMismatch(uint256 jobId, bytes16 expected, bytes16 given);
    /// @notice The provider's price for the job is above the job's max price.
    error JobPriceAboveMax(uint256 jobId, address provider, uint256 price, uint256 maxPrice);
    /// @notice The provider's price for the job is now above the price the oracle quoted.
    error JobPriceAboveQuote(uint256 jobId, address provider, uint256 price, uint256 quotedPrice);
    /// @notice The job needs more than the provider declared.
    error JobDoesNotFit(uint256 jobId, address provider);
    /// @notice OUT_OF_CREDITS is allowed only once the escrow is spent, at `fundedUntil`.
    error JobStillFunded(uint256 jobId, uint256 fundedUntil, uint256 nowTime);
    /// @notice The running job's escrow ran out at `fundedUntil`: it can no longer be topped up
    /// (it may be ended OUT_OF_CREDITS); submit a new job.
    error JobEscrowSpent(uint256 jobId, uint256 fundedUntil);
    /// @notice The placement timeout has not run out yet; it does at `deadline`.
    error JobTimeoutNotReached(uint256 jobId, uint256 deadline, uint256 nowTime);
    /// @notice Resources must name at least one CPU.
    error JobInvalidResources(uint32 cpus, uint32 gpus, uint32 memMb);
    /// @notice The spec must be 1 to `max` bytes.
    error JobInvalidSpecLength(uint256 length, uint256 max);
    /// @notice An escrow, max price or top-up was zero or above what the job record holds.
    error JobInvalidAmount(uint256 amount, uint256 max);
    /// @notice Only the oracle may do this.
    error MarketNotOracle(address caller, address oracle);
    /// @notice New jobs are not accepted while requests are paused.
    error MarketRequestsPaused();
    /// @notice `account` has `balance` credits here and the call needs `needed`.
    error MarketInsufficientBalance(address account, uint256 balance, uint256 needed);
    /// @notice Amounts must be above zero.
    error MarketZeroAmount();
    /// @notice The fee may be at most `max` basis points.
    error MarketFeeTooHigh(uint256 bps, uint256 max);
    /// @notice The request fee may be at most `max` credit units.
    error MarketRequestFeeTooHigh(uint256 fee, uint256 max);
    /// @notice The fee and timeouts were changed 65,535 times: no more versions can be recorded.
    error MarketTooManyRuleChanges();
    /// @notice The provider is not approved (its status is `status`).
    error ProviderNotApproved(address provider, ProviderStatus status);
    /// @notice A banned provider cannot register again, nor accept a job (it may still start and
    /// end the jobs it accepted before the ban).
    error ProviderBanned(address provider);
    /// @notice Hardware must declare at least one node and one CPU.
    error ProviderInvalidHardware();
    /// @notice The provider has no record to act on.
    error ProviderNotFound(address provider);

    // ---------------------------------------------------------------- credits

    /// @notice Moves `amount` credits from the caller's wallet into its balance here (needs allowance).
    function deposit(uint256 amount) external;
    /// @notice Like `deposit`, with an EIP-2612 permit instead of a prior approval.
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;
    /// @notice Moves `amount` credits from the caller's balance here back to its wallet.
    function withdraw(uint256 amount) external;
    /// @notice Credits `account` holds here, free to lock in jobs or withdraw.
    function balanceOf(address account) external view returns (uint256);
    /// @notice Admin: moves `amount` of accrued fees to `to`'s wallet.
    function withdrawFees(address to, uint256 amount) external;
    /// @notice Admin: moves the credits the market holds above what it owes (balances, live
    /// escrows and accrued fees), which only a plain ERC-20 transfer to the market can create,
    /// to `to`'s wallet: a sender who transferred by mistake can be given them back.
    function sweepSurplus(address to) external;

    // ---------------------------------------------------------------- providers

    /// @notice Registers the caller as a provider, or updates its record (status is kept).
    function registerProvider(Hardware calldata hardware, Prices calldata prices, string[] calldata labels) external;
    /// @notice Admin: lets a registered provider receive jobs.
    function approveProvider(address provider) external;
    /// @notice Admin: stops a provider from receiving jobs, for good. It can no longer be placed
    /// on nor accept a job, and its placements not accepted may be reclaimed at once; the jobs it
    /// accepted before the ban may still start (within their start timeout), and run, end and are
    /// billed as usual (its earnings stay its own).
    function banProvider(address provider) external;
    /// @notice Admin: deletes a registered or approved provider's record (it may register again).
    /// A banned provider stays banned.
    function removeProvider(address provider) external;
    /// @notice A provider's record: standing, hardware and prices.
    function getProvider(address provider)
        external
        view
        returns (ProviderStatus status, Hardware memory hardware, Prices memory prices);

    // ---------------------------------------------------------------- customers

    /// @notice Requests a job, locking `escrow` credits from the caller's balance and paying the
    /// request fee (see `requestFee`) from it.
    /// @return jobId The new job's id (ids start at 1).
    function requestJob(
        uint32 cpus,
        uint32 gpus,
        uint32 memMb,
        uint256 maxPricePerMinute,
        uint256 escrow,
        bytes calldata spec
    ) external returns (uint256 jobId);
    /// @notice Adds `amount` credits from the caller's balance to a live job's escrow; a running
    /// job's only while its escrow is not spent (`JobEscrowSpent` from `fundedUntil` on).
    function topUp(uint256 jobId, uint256 amount) external;
    /// @notice Cancels a live job; a running job is billed its elapsed time, the rest is refunded.
    function cancelJob(uint256 jobId) external;

    // ---------------------------------------------------------------- oracle

    /// @notice Oracle: places one job (PENDING -> META_SCHEDULED). Reverts with the reason.
    function placeJob(Placement calldata placement) external;
    /// @notice Oracle: places many jobs; an item that fails is skipped with `BatchItemSkipped`.
    /// @return done How many were placed.
    function placeJobs(Placement[] calldata placements) external returns (uint256 done);
    /// @notice Oracle: returns placements that were not accepted or started in time to PENDING,
    /// and a banned provider's placements not accepted, at once.
    /// Items that fail are skipped with `BatchItemSkipped`.
    function reclaimJobs(uint256[] calldata jobIds) external returns (uint256 done);
    /// @notice Oracle: fails running jobs whose provider went silent. Each is billed up to the
    /// provider's last sign of life (`lastSeen`, no later than now), the rest is refunded.
    /// Items that fail are skipped with `BatchItemSkipped`.
    function failJobs(SilentJob[] calldata jobs) external returns (uint256 done);

    // ---------------------------------------------------------------- providers' jobs

    /// @notice Provider: the job is queued on its cluster (META_SCHEDULED -> SCHEDULED).
    function acceptJob(uint256 jobId) external;
    /// @notice Provider: the job started on the backend at `startedAt` (SCHEDULED -> RUNNING);
    /// metering starts there. It is clamped, never refused: no earlier than the acceptance (the
    /// job was not this provider's to run before), no later than the block (a provider whose
    /// clock runs ahead of the chain's is metered from the block).
    function startJob(uint256 jobId, uint256 startedAt) external;
    /// @notice Provider: the job ended on the backend at `endedAt` with `exitCode` (0: FINISHED,
    /// else FAILED); billed from its start up to `endedAt`, clamped between the start and the
    /// block, and the rest refunded. `resultDigest` commits to the job's results and is emitted
    /// in `JobEnded`.
    function completeJob(uint256 jobId, int32 exitCode, bytes32 resultDigest, uint256 endedAt) external;
    /// @notice Provider: gives a placed job back (META_SCHEDULED or SCHEDULED -> PENDING), with a reason.
    function refuseJob(uint256 jobId, string calldata reason) external;
    /// @notice Provider: many steps on its own jobs in one transaction; a failing item is skipped
    /// with `BatchItemSkipped`.
    function providerBatch(ProviderStep[] calldata steps) external returns (uint256 done);

    // ---------------------------------------------------------------- anyone

    /// @notice Ends running jobs whose escrow is spent as OUT_OF_CREDITS; the provider is paid
    /// the escrow. Items that fail are skipped with `BatchItemSkipped`.
    function expireJobs(uint256[] calldata jobIds) external returns (uint256 done);

    // ---------------------------------------------------------------- admin

    /// @notice Admin: hands the oracle's role to `newOracle`.
    function setOracle(address newOracle) external;
    /// @notice Admin: sets the platform fee, taken from what providers earn (at most MAX_FEE_BPS).
    /// It applies to jobs placed from now on; placed jobs keep the fee they were placed with.
    function setFee(uint16 bps) external;
    /// @notice Admin: sets how long placements may wait to be accepted and to start. Like the
    /// fee, they apply to jobs placed from now on; placed jobs keep the deadlines they were placed with.
    function setTimeouts(uint32 acceptTimeout, uint32 startTimeout) external;
    /// @notice Admin: sets the fee, in credit units, that each new request pays to the platform
    /// (not refunded, even on cancel): what a flood of requests costs its sender.
    function setRequestFee(uint256 fee) external;
    /// @notice Admin: stops new job requests. Everything else (ending, cancelling, withdrawing) goes on.
    function pause() external;
    /// @notice Admin: accepts new job requests again.
    function unpause() external;

    // ---------------------------------------------------------------- reading

    /// @notice The Credit token (ERC-20 with permit) that credits are paid in.
    function credit() external view returns (IERC20);
    /// @notice The highest platform fee, in basis points, the admin may set.
    function MAX_FEE_BPS() external view returns (uint256);
    /// @notice The largest job spec, in bytes, a request may carry.
    function MAX_SPEC_BYTES() external view returns (uint256);
    /// @notice Platform fees accrued and not yet withdrawn.
    function accruedFees() external view returns (uint256);
    /// @notice The oracle, fee (basis points), paused flag and placement timeouts.
    function config()
        external
        view
        returns (address oracle, uint256 feeBps, bool paused, uint256 acceptTimeout, uint256 startTimeout);
    /// @notice The job's stored record.
    function getJob(uint256 jobId) external view returns (JobView memory);
    /// @notice How many jobs were ever requested (the last id).
    function jobCount() external view returns (uint256);
    /// @notice The price per minute `provider` charges for these resources now.
    function quote(address provider, uint32 cpus, uint32 gpus, uint32 memMb) external view returns (uint256);
    /// @notice The time at which a running job's escrow is spent (OUT_OF_CREDITS allowed).
    function fundedUntil(uint256 jobId) external view returns (uint256);
    /// @notice The fee, in credit units, that each new request pays to the platform.
    function requestFee() external view returns (uint256);
}
