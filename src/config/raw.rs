//! The YAML tree exactly as written: mxisd's and ma1sd's keys (camelCase), every field
//! optional, unknown keys refused. Sections and keys that mxisd or ma1sd know but this version
//! does not implement yet are accepted as `Unsupported` and reported once at start.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// A key that mxisd/ma1sd know and this version does not implement: present or absent.
pub type Unsupported = Option<IgnoredAny>;

/// Declares a section struct: its implemented keys (typed) and its recognised-but-unsupported
/// keys, so the names reported as unsupported are the names serde matched.
macro_rules! section {
    ($(#[$meta:meta])* $name:ident {
        $($field:ident : $ty:ty = $key:literal,)*
    } unsupported { $($ufield:ident = $ukey:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Deserialize, Default, Debug)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(#[serde(rename = $key)] pub $field: Option<$ty>,)*
            $(#[serde(rename = $ukey)] pub $ufield: Unsupported,)+
        }

        impl $name {
            /// The recognised keys of this section that are set but not implemented.
            pub fn unsupported(&self) -> Vec<&'static str> {
                let mut keys: Vec<&'static str> = Vec::new();
                $(if self.$ufield.is_some() { keys.push($ukey); })+
                keys
            }
        }
    };
    ($(#[$meta:meta])* $name:ident {
        $($field:ident : $ty:ty = $key:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Deserialize, Default, Debug)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(#[serde(rename = $key)] pub $field: Option<$ty>,)*
        }
    };
}

section! {
    /// The whole file.
    Root {
        matrix: Matrix = "matrix",
        server: Server = "server",
        key: Key = "key",
        storage: Storage = "storage",
        http: Http = "http",
        logging: Logging = "logging",
        federation: Federation = "federation",
        account: Account = "account",
        policy: Policy = "policy",
        memory: Memory = "memory",
        lookup: Lookup = "lookup",
        hashing: Hashing = "hashing",
        sql: Sql = "sql",
        synapse_sql: Sql = "synapseSql",
        ldap: Ldap = "ldap",
        rest: Rest = "rest",
        internal: Internal = "internal",
    } unsupported {
        appsvc = "appsvc",
        auth = "auth",
        directory = "directory",
        account_config = "accountConfig",
        dns = "dns",
        exec = "exec",
        firebase = "firebase",
        forward = "forward",
        invite = "invite",
        notification = "notification",
        netiq = "netiq",
        register = "register",
        session = "session",
        threepid = "threepid",
        view = "view",
        wordpress = "wordpress",
    }
}

section! {
    Matrix {
        domain: String = "domain",
        v1: bool = "v1",
        v2: bool = "v2",
    } unsupported {
        identity = "identity",
    }
}

section! {
    Server {
        name: String = "name",
        port: u16 = "port",
        public_url: String = "publicUrl",
        bind_address: String = "bindAddress",
        hostname: String = "hostname",
    }
}

section! {
    Key {
        path: String = "path",
    }
}

section! {
    Storage {
        backend: String = "backend",
        provider: StorageProvider = "provider",
    }
}

section! {
    StorageProvider {
        sqlite: Sqlite = "sqlite",
    } unsupported {
        postgresql = "postgresql",
    }
}

section! {
    Sqlite {
        database: String = "database",
    }
}

section! {
    /// mxisd's own HTTP server settings (new in this implementation).
    Http {
        workers: usize = "workers",
        max_body_bytes: usize = "maxBodyBytes",
        request_timeout: u64 = "requestTimeout",
        body_timeout: u64 = "bodyTimeout",
        keep_alive_timeout: u64 = "keepAliveTimeout",
        max_connections: usize = "maxConnections",
        trusted_proxies: Vec<String> = "trustedProxies",
    }
}

section! {
    /// ma1sd's logging levels.
    Logging {
        root: String = "root",
        app: String = "app",
        requests: bool = "requests",
    }
}

section! {
    /// Outbound calls to homeservers and other identity servers (new in this implementation).
    Federation {
        resolver: String = "resolver",
        connect_timeout: u64 = "connectTimeout",
        timeout: u64 = "timeout",
        ip_range_whitelist: Vec<String> = "ipRangeWhitelist",
        tls: FederationTls = "tls",
    }
}

section! {
    FederationTls {
        ca_file: String = "caFile",
        insecure: bool = "insecure",
    }
}

section! {
    /// v2 accounts (new in this implementation).
    Account {
        homeserver_allow_list: Vec<String> = "homeserverAllowList",
    }
}

section! {
    /// ma1sd's terms of service.
    Policy {
        policies: std::collections::BTreeMap<String, PolicyDocument> = "policies",
    }
}

section! {
    PolicyDocument {
        version: String = "version",
        terms: std::collections::BTreeMap<String, PolicyTerms> = "terms",
    } unsupported {
        regexp = "regexp",
    }
}

section! {
    PolicyTerms {
        name: String = "name",
        url: String = "url",
    }
}

section! {
    /// mxisd's static identity store.
    Memory {
        enabled: bool = "enabled",
        identities: Vec<MemoryIdentity> = "identities",
    }
}

section! {
    MemoryIdentity {
        username: String = "username",
        password: String = "password",
        display_name: String = "displayName",
        threepids: Vec<ThreePid> = "threepids",
    } unsupported {
        roles = "roles",
    }
}

section! {
    ThreePid {
        medium: String = "medium",
        address: String = "address",
    }
}

section! {
    Lookup {
        bulk: LookupBulk = "bulk",
        max_addresses: usize = "maxAddresses",
        default_region: String = "defaultRegion",
    } unsupported {
        recursive = "recursive",
    }
}

section! {
    LookupBulk {
        enabled: bool = "enabled",
    }
}

section! {
    /// ma1sd's hashed lookups (v2).
    Hashing {
        enabled: bool = "enabled",
        pepper_length: usize = "pepperLength",
        algorithms: Vec<String> = "algorithms",
        refresh_interval: u64 = "refreshInterval",
    } unsupported {
        rotation_policy = "rotationPolicy",
        hash_storage_type = "hashStorageType",
        delay = "delay",
        requests = "requests",
    }
}

section! {
    /// mxisd's SQL identity store (`sql`) and its Synapse preset (`synapseSql`).
    Sql {
        enabled: bool = "enabled",
        kind: String = "type",
        connection: String = "connection",
        timeout: u64 = "timeout",
        identity: SqlIdentity = "identity",
        lookup: SqlLookup = "lookup",
    } unsupported {
        auth = "auth",
        directory = "directory",
        profile = "profile",
    }
}

section! {
    SqlIdentity {
        enabled: bool = "enabled",
        kind: String = "type",
        query: String = "query",
        medium: std::collections::BTreeMap<String, String> = "medium",
    }
}

section! {
    SqlLookup {
        query: String = "query",
    }
}

section! {
    /// mxisd's LDAP / Active Directory identity store.
    Ldap {
        enabled: bool = "enabled",
        active_directory: bool = "activeDirectory",
        default_domain: String = "defaultDomain",
        filter: String = "filter",
        connection: LdapConnection = "connection",
        attribute: LdapAttribute = "attribute",
        identity: LdapIdentity = "identity",
        auth: LdapAuth = "auth",
    } unsupported {
        directory = "directory",
        profile = "profile",
    }
}

section! {
    LdapConnection {
        host: String = "host",
        port: u16 = "port",
        tls: bool = "tls",
        start_tls: bool = "startTls",
        ca_file: String = "caFile",
        bind_dn: String = "bindDn",
        bind_password: String = "bindPassword",
        base_dns: Vec<String> = "baseDNs",
        base_dn: String = "baseDn",
        timeout: u64 = "timeout",
    }
}

section! {
    LdapAttribute {
        uid: LdapUid = "uid",
        name: String = "name",
        threepid: std::collections::BTreeMap<String, Vec<String>> = "threepid",
    }
}

section! {
    LdapUid {
        kind: String = "type",
        value: String = "value",
    }
}

section! {
    LdapIdentity {
        filter: String = "filter",
        token: String = "token",
        medium: std::collections::BTreeMap<String, String> = "medium",
    } unsupported {
        lookup = "lookup",
    }
}

section! {
    LdapAuth {
        filter: String = "filter",
    }
}

section! {
    /// mxisd's REST identity store.
    Rest {
        enabled: bool = "enabled",
        host: String = "host",
        timeout: u64 = "timeout",
        endpoints: RestEndpoints = "endpoints",
    }
}

section! {
    RestEndpoints {
        auth: String = "auth",
        identity: RestIdentityEndpoints = "identity",
    } unsupported {
        directory = "directory",
        profile = "profile",
    }
}

section! {
    RestIdentityEndpoints {
        single: String = "single",
        bulk: String = "bulk",
    }
}

section! {
    /// `/_matrix-internal/` endpoints (the Synapse REST auth module).
    Internal {
        allowed_cidr: Vec<String> = "allowedCidr",
        rate_limit: u32 = "rateLimit",
    } unsupported {
        enabled = "enabled",
    }
}
