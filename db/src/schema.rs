//! The tables, as diesel sees them: the same on both backends (see `migrations/`).

diesel::table! {
    issuers (id) {
        id -> Text,
        certificate -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    requests (id) {
        id -> BigInt,
        profile -> Text,
        requester -> Text,
        csr_der -> Binary,
        subject -> Text,
        sans -> Text,
        status -> Text,
        approvals_needed -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
        decided_by -> Nullable<Text>,
        reason -> Nullable<Text>,
        serial -> Nullable<Text>,
    }
}

diesel::table! {
    approvals (request_id, officer) {
        request_id -> BigInt,
        officer -> Text,
        comment -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    certificates (serial) {
        serial -> Text,
        issuer -> Text,
        subject -> Text,
        sans -> Text,
        search -> Text,
        not_before -> BigInt,
        not_after -> BigInt,
        profile -> Text,
        requester -> Text,
        status -> Text,
        der -> Nullable<Binary>,
        created_at -> BigInt,
        request_id -> Nullable<BigInt>,
        failure -> Nullable<Text>,
        reserved_by -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (seq) {
        seq -> BigInt,
        at -> BigInt,
        actor -> Text,
        source -> Text,
        action -> Text,
        object -> Text,
        details -> Text,
        prev_hash -> Binary,
        hash -> Binary,
    }
}

diesel::table! {
    audit_checkpoints (seq) {
        seq -> BigInt,
        head_hash -> Binary,
        at -> BigInt,
        key_uri -> Text,
        signature -> Binary,
    }
}

diesel::table! {
    audit_head (id) {
        id -> Integer,
        seq -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    crl_numbers (issuer) {
        issuer -> Text,
        last -> BigInt,
    }
}

diesel::table! {
    revocations (serial) {
        serial -> Text,
        revoked_at -> BigInt,
        reason -> Integer,
        invalidity_date -> Nullable<BigInt>,
        issuer -> Text,
        not_after -> BigInt,
    }
}

diesel::table! {
    ca_revocations (parent, serial) {
        parent -> Text,
        serial -> Text,
        ca -> Text,
        not_after -> BigInt,
        revoked_at -> BigInt,
        reason -> Integer,
        revoked_by -> Text,
    }
}

diesel::joinable!(revocations -> certificates (serial));
diesel::allow_tables_to_appear_in_same_query!(certificates, revocations);

diesel::table! {
    api_tokens (name) {
        name -> Text,
        hash -> Binary,
        role -> Text,
        profiles -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        created_by -> Text,
    }
}

diesel::table! {
    users (name) {
        name -> Text,
        password_hash -> Text,
        roles -> Text,
        disabled -> Bool,
        must_change_password -> Bool,
        failed_logins -> Integer,
        locked_until -> Nullable<BigInt>,
        created_at -> BigInt,
        created_by -> Text,
        password_changed_at -> BigInt,
        officer_since -> Nullable<BigInt>,
        credentials_reset_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Binary,
        user_name -> Text,
        created_at -> BigInt,
        last_seen -> BigInt,
    }
}

diesel::table! {
    operations (id) {
        id -> BigInt,
        kind -> Text,
        target -> Text,
        requested_by -> Text,
        approvals_needed -> BigInt,
        status -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        decided_by -> Nullable<Text>,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    operation_approvals (operation_id, officer) {
        operation_id -> BigInt,
        officer -> Text,
        comment -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    codesign_keys (label) {
        label -> Text,
        owner -> Text,
        profile -> Text,
        key_type -> Text,
        public_key -> Binary,
        request_id -> Nullable<BigInt>,
        serial -> Nullable<Text>,
        retired -> Nullable<Text>,
        created_at -> BigInt,
        owner_kind -> Text,
    }
}

diesel::table! {
    codesign_signatures (id) {
        id -> BigInt,
        label -> Text,
        caller -> Text,
        serial -> Text,
        digest_algorithm -> Text,
        digest -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    codesign_bindings (label, token) {
        label -> Text,
        token -> Text,
        bound_by -> Text,
        bound_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(codesign_bindings, api_tokens);

diesel::table! {
    acme_nonces (id) {
        id -> Binary,
        expires_at -> BigInt,
    }
}

diesel::table! {
    acme_eab_keys (kid) {
        kid -> Text,
        name -> Text,
        profiles -> Text,
        names -> Text,
        hmac_sealed -> Binary,
        created_at -> BigInt,
        created_by -> Text,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    acme_accounts (id) {
        id -> Text,
        thumbprint -> Text,
        jwk -> Text,
        status -> Text,
        contact -> Text,
        eab_kid -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    acme_orders (id) {
        id -> Text,
        account_id -> Text,
        status -> Text,
        identifiers -> Text,
        profile -> Text,
        not_before -> Nullable<BigInt>,
        not_after -> Nullable<BigInt>,
        expires_at -> BigInt,
        created_at -> BigInt,
        serial -> Nullable<Text>,
        error -> Nullable<Text>,
        replaces -> Nullable<Text>,
    }
}

diesel::table! {
    acme_authzs (id) {
        id -> Text,
        order_id -> Text,
        kind -> Text,
        value -> Text,
        wildcard -> Bool,
        status -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    acme_challenges (id) {
        id -> Text,
        authz_id -> Text,
        kind -> Text,
        token -> Text,
        status -> Text,
        validated_at -> Nullable<BigInt>,
        error -> Nullable<Text>,
        claimed_by -> Nullable<Text>,
    }
}

diesel::joinable!(acme_challenges -> acme_authzs (authz_id));
diesel::allow_tables_to_appear_in_same_query!(acme_challenges, acme_authzs);
diesel::allow_tables_to_appear_in_same_query!(acme_authzs, acme_orders);

diesel::table! {
    nodes (instance) {
        instance -> Text,
        name -> Text,
        started_at -> BigInt,
        heartbeat_at -> BigInt,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    published_crls (issuer) {
        issuer -> Text,
        number -> BigInt,
        this_update -> BigInt,
        next_update -> BigInt,
        entries -> BigInt,
        der -> Binary,
    }
}

diesel::table! {
    ocsp_answers (cert_id) {
        cert_id -> Binary,
        serial -> Text,
        issuer -> Text,
        this_update -> BigInt,
        next_update -> BigInt,
        der -> Binary,
    }
}
