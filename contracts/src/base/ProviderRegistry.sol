// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.26;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {IJobMarket, ProviderStatus, Hardware, Prices} from "../interfaces/IJobMarket.sol";
import {Billing} from "../libraries/Billing.sol";

/// @title ProviderRegistry
/// @notice The providers: their hardware and prices (declared by themselves), their standing
/// (set by the admin), and the number each is known by in job records.
abstract contract ProviderRegistry is IJobMarket, AccessControl {
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

    /// @dev A provider's number and ban, one slot read by every provider step: id (32) | banned (8).
    struct ProviderKey {
        uint32 id;
        bool banned;
    }

    mapping(address provider => Provider) internal _providers;
    /// @dev A provider's number, given at its first registration and kept for good (also across
    /// removal), so that a job stores 32 bits for its provider instead of an address; and its ban,
    /// beside it so that a provider step reads both at once.
    mapping(address provider => ProviderKey) internal _keys;
    mapping(uint32 providerId => address) internal _providerAddrs;
    uint32 private _providerCount;

    /// @inheritdoc IJobMarket
    function registerProvider(Hardware calldata hardware, Prices calldata prices, string[] calldata labels) external {
        if (hardware.nodes == 0 || hardware.cpus == 0) revert ProviderInvalidHardware();
        Provider storage p = _providers[msg.sender];
        ProviderStatus status = p.status;
        if (status == ProviderStatus.BANNED) revert ProviderBanned(msg.sender);
        if (status == ProviderStatus.NONE) status = ProviderStatus.REGISTERED;
        if (_keys[msg.sender].id == 0) {
            uint32 id = ++_providerCount; // 2^32 registrations will not happen
            _keys[msg.sender].id = id;
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
        _keys[provider].banned = true;
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

    /// @inheritdoc IJobMarket
    function getProvider(address provider)
        external
        view
        returns (ProviderStatus status, Hardware memory hardware, Prices memory prices)
    {
        Provider memory p = _providers[provider];
        return (p.status, Hardware(p.nodes, p.cpus, p.gpus, p.memMb), Prices(p.cpuPrice, p.gpuPrice, p.gbPrice));
    }

    /// @inheritdoc IJobMarket
    function quote(address provider, uint32 cpus, uint32 gpus, uint32 memMb) external view returns (uint256) {
        Provider memory p = _providers[provider];
        return Billing.pricePerMinute(cpus, gpus, memMb, p.cpuPrice, p.gpuPrice, p.gbPrice);
    }
}
