// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

/// @title Billing
/// @notice The market's billing arithmetic, written once for Solidity. `metascheduler/billing.py`
/// mirrors it function for function (`price_per_minute`, `cost`, `fee`, `funded_seconds`), with
/// the same rounding: every division rounds down, in the customer's favour, except
/// `fundedSeconds`, which rounds up to the first second at which the escrow is spent.
/// Units: credit units (6 decimals); prices per minute of one CPU, one GPU and one GB (1024 MB).
library Billing {
    uint256 internal constant SECONDS_PER_MINUTE = 60;
    uint256 internal constant MB_PER_GB = 1024;
    uint256 internal constant BPS_DENOMINATOR = 10_000;

    /// @notice Credit units per minute for a job of these resources at these prices.
    function pricePerMinute(
        uint256 cpus,
        uint256 gpus,
        uint256 memMb,
        uint256 cpuPrice,
        uint256 gpuPrice,
        uint256 gbPrice
    ) internal pure returns (uint256) {
        return cpus * cpuPrice + gpus * gpuPrice + (memMb * gbPrice) / MB_PER_GB;
    }

    /// @notice What a run of `elapsed` seconds at `price` per minute costs, capped by the escrow.
    function cost(uint256 price, uint256 elapsed, uint256 escrow) internal pure returns (uint256) {
        uint256 full = (price * elapsed) / SECONDS_PER_MINUTE;
        return full < escrow ? full : escrow;
    }

    /// @notice The platform's share of `amount` at `feeBps` basis points.
    function fee(uint256 amount, uint256 feeBps) internal pure returns (uint256) {
        return (amount * feeBps) / BPS_DENOMINATOR;
    }

    /// @notice Seconds of running after which the escrow is spent: the first `elapsed` with
    /// `price * elapsed >= escrow * 60`. `price` must not be zero (a free job never runs dry;
    /// the caller says so).
    function fundedSeconds(uint256 escrow, uint256 price) internal pure returns (uint256) {
        return (escrow * SECONDS_PER_MINUTE + price - 1) / price;
    }
}
